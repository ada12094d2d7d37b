using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Storage;

/// <summary>
/// aio=io_uring: one ring per virtqueue. Submit prepares an SQE in place (READV/WRITEV on the request's own iovec array,
/// RWF_DSYNC for FUA; FSYNC with DATASYNC; FALLOCATE for discard and write-zeroes), Kick starts the batch with one
/// io_uring_enter, and the kernel signals the ring's registered eventfd (the CompletionEvent) as it posts completions,
/// which Reap reads from shared memory. What io_uring cannot do in one step — transfers the kernel cut short (the file
/// shrank), O_DIRECT requests with unaligned memory (bounced), BLKDISCARD, writing zeros where fallocate is refused —
/// goes to one helper thread that runs it synchronously and signals the same eventfd.
/// </summary>
/// <remarks>
/// The kernel's SQEs point only at the request's vectors (the device's memory, valid until reaped) and at no memory of
/// ours, so closing the ring after a failed drain cannot make the kernel write into freed queue memory; the helper's
/// bounce buffer is leaked if the helper does not stop.
/// </remarks>
internal sealed unsafe class IoUringFileQueue : FileQueue
{
    private readonly IoUring _ring;
    private readonly EventFd _event;
    private readonly FileWorkerPool _helper;
    private readonly int[] _slow, _taken;
    private int _slowCount;
    private readonly LibC.IoUringCqe[] _cqes = new LibC.IoUringCqe[64];
    private readonly TimeSpan _drainTimeout;
    private readonly bool _inline;

    private IoUringFileQueue(FileTarget target, int queue, int depth, IoUring ring, EventFd ev, int bounceSize, TimeSpan drainTimeout, bool inline, Action<FileQueue> onDispose)
        : base(target, depth, onDispose)
    {
        _ring = ring; _event = ev; _drainTimeout = drainTimeout; _inline = inline;
        _slow = new int[depth];
        _taken = new int[depth];
        _helper = new FileWorkerPool(target, Table.Slots, ev, 1, bounceSize, $"blk-q{queue}-uring");
    }

    /// <summary>
    /// A queue with its own ring of at least <paramref name="depth"/> SQEs (so the SQ never runs out: at most depth
    /// requests are in flight, and the CQ, twice as large, never overflows). Returns the errno if the ring cannot be set up.
    /// With <paramref name="inline"/> (a memory-backed file) requests run on the caller's thread instead of the ring.
    /// </summary>
    public static int TryCreate(FileTarget target, int queue, int depth, int bounceSize, TimeSpan drainTimeout, bool inline, Action<FileQueue> onDispose, out IoUringFileQueue? q)
    {
        q = null;
        int e = IoUring.TryCreate((uint)depth, out var ring);
        if (e != 0) return e;
        if (ring!.SqEntries < depth) { ring.Dispose(); return LibC.EINVAL; }
        EventFd? ev = null;
        try
        {
            ev = EventFd.Create(nonBlocking: true);
            e = ring.RegisterEventFd(ev.Handle);
            if (e != 0) { ring.Dispose(); ev.Dispose(); return e; }
            q = new IoUringFileQueue(target, queue, depth, ring, ev, bounceSize, drainTimeout, inline, onDispose);
            return 0;
        }
        catch
        {
            ring.Dispose(); ev?.Dispose();
            throw;
        }
    }

    public override SafeHandle? CompletionEvent => _event.Handle;
    public override FileAioMode Mode => FileAioMode.IoUring;
    /// <summary>Requests run inline on the caller's thread (memory-backed file, FileStorageOptions.InlineMemoryBacked).</summary>
    public bool Inline => _inline;
    /// <inheritdoc/>
    public override bool HasReadyCompletions => HasImmediate || _ring.Ready > 0;
    /// <summary>The ring (tests look at the SQEs it was given).</summary>
    internal IoUring Ring => _ring;

    protected override void Start(int slot)
    {
        ref var s = ref Table.Slots[slot];
        ref readonly var r = ref s.Request;
        if (_inline && !s.Bounced)
        {
            // tmpfs has no non-blocking path: the ring would hand this to an io-wq worker. The copy is cheaper here.
            Interlocked.Increment(ref Stats.inline);
            FinishImmediately(slot, Target.Execute(r, false, 0, null));
            return;
        }
        if (r.Op == BlockOp.Flush && Target.Cache == FileCacheMode.Unsafe) { FinishImmediately(slot, Target.Flush()); return; }
        if (s.Bounced || (r.Op == BlockOp.Discard && Target.IsBlockDevice)
            || (r.Op == BlockOp.WriteZeroes && Target.ZeroRangeUnsupported && (Target.ZeroMode(r.Flags) & LibC.FALLOC_FL_PUNCH_HOLE) == 0))
        {
            ToHelper(slot, 0);
            return;
        }
        var sqe = _ring.TryGetSqe();
        if (sqe == null) { ToHelper(slot, 0); return; }   // cannot happen with SqEntries >= depth; stay correct anyway
        sqe->Fd = Target.Fd;
        sqe->UserData = (ulong)slot;
        switch (r.Op)
        {
            case BlockOp.Read:
            case BlockOp.Write:
                sqe->Opcode = r.Op == BlockOp.Read ? LibC.IORING_OP_READV : LibC.IORING_OP_WRITEV;
                sqe->Addr = (ulong)r.Vectors;   // struct iovec[]: IoVec has its layout
                sqe->Len = (uint)r.VectorCount;
                sqe->Off = r.Offset;
                sqe->OpFlags = r.Op == BlockOp.Write ? (uint)Target.WriteFlags(r.Flags) : 0;
                break;
            case BlockOp.Flush:
                Interlocked.Increment(ref Stats.flushes);
                sqe->Opcode = LibC.IORING_OP_FSYNC;
                sqe->OpFlags = LibC.IORING_FSYNC_DATASYNC;
                break;
            default:
                // IORING_OP_FALLOCATE carries the length in addr and the mode in len (io_uring_prep_fallocate).
                sqe->Opcode = LibC.IORING_OP_FALLOCATE;
                sqe->Off = r.Offset;
                sqe->Addr = r.Length;
                sqe->Len = (uint)(r.Op == BlockOp.Discard ? LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE : Target.ZeroMode(r.Flags));
                break;
        }
    }

    private void ToHelper(int slot, ulong resume)
    {
        Table.Slots[slot].Resume = resume;
        Interlocked.Increment(ref Stats.slowPath);
        _slow[_slowCount++] = slot;
    }

    public override void Kick()
    {
        SubmitRing();
        PostSlow();
        // Requests finished inline are not signalled: the device reaps them after the kick (HasReadyCompletions).
    }

    private void PostSlow()
    {
        _helper.Post(_slow.AsSpan(0, _slowCount));
        _slowCount = 0;
    }

    private void SubmitRing()
    {
        while (_ring.Unsubmitted > 0)
        {
            int r = _ring.Submit();
            if (r == -LibC.EINTR) continue;
            if (r <= 0)
            {
                // EAGAIN/EBUSY (kernel short of memory or completions backed up): retried on the next Reap, which the
                // signal below guarantees; no blocking here.
                _event.Signal();
                return;
            }
        }
    }

    public override int Reap(Span<BlockCompletion> completions)
    {
        _event.Drain();   // before looking: a completion posted after this read signals again
        if (_ring.Unsubmitted > 0) SubmitRing();
        int n = 0;
        ReapImmediate(completions, ref n);
        int k = _helper.Take(_taken.AsSpan(0, Math.Min(_taken.Length, completions.Length - n)), out bool helperMore);
        for (int i = 0; i < k; i++) Complete(_taken[i], completions, ref n);
        while (n < completions.Length)
        {
            int c = _ring.Reap(_cqes.AsSpan(0, Math.Min(_cqes.Length, completions.Length - n)));
            if (c == 0) break;
            for (int i = 0; i < c; i++) OnCqe((int)_cqes[i].UserData, _cqes[i].Res, completions, ref n);
        }
        PostSlow();
        if (helperMore || HasImmediate || _ring.Ready > 0) _event.Signal();
        return n;
    }

    private void OnCqe(int slot, int res, Span<BlockCompletion> into, ref int n)
    {
        ref var s = ref Table.Slots[slot];
        ref readonly var r = ref s.Request;
        if (r.Op is BlockOp.Read or BlockOp.Write)
        {
            if (res >= 0 && (ulong)res < r.Length) { ToHelper(slot, (ulong)res); return; }   // short: the end of the file
            if (res == -LibC.EAGAIN || res == -LibC.EINTR) { ToHelper(slot, 0); return; }
        }
        else if (r.Op == BlockOp.WriteZeroes && res == -LibC.EOPNOTSUPP)
        {
            // ZERO_RANGE refused (tmpfs): remember, and let the helper write zeros; a refused punch tries ZERO_RANGE there.
            if ((Target.ZeroMode(r.Flags) & LibC.FALLOC_FL_PUNCH_HOLE) == 0) Target.MarkZeroRangeUnsupported();
            ToHelper(slot, 0);
            return;
        }
        s.Error = res < 0 ? -res : 0;
        Complete(slot, into, ref n);
    }

    public override bool WaitForCompletions(int timeoutMs)
    {
        if (_ring.Unsubmitted > 0) SubmitRing();
        if (HasImmediate || _ring.Ready > 0 || _helper.HasDone) return true;
        if (InFlight == 0) return false;
        var h = _event.Handle;
        return EventFd.WaitAny(new ReadOnlySpan<SafeFd>(in h), timeoutMs) >= 0;
    }

    protected override void Release()
    {
        Kick();
        Drain(_drainTimeout);
        _helper.Stop(TimeSpan.FromSeconds(1));
        _helper.Dispose();
        _ring.Dispose();
        _event.Dispose();
    }
}
