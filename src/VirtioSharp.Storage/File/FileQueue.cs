using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;

namespace VirtioSharp.Storage;

/// <summary>
/// What the three file queues share: preallocated slots, the checks every request passes before any I/O, requests that
/// finish without I/O, completion bookkeeping and the stats. Owner-thread only (IBlockQueue's rule).
/// </summary>
internal abstract class FileQueue : IBlockQueue
{
    /// <summary>IOV_MAX: preadv2/pwritev2 and IORING_OP_READV/WRITEV take at most this many vectors (UIO_MAXIOV).</summary>
    public const int IovMax = 1024;

    protected readonly FileTarget Target;
    protected readonly FileStorageStats Stats;
    protected readonly SlotTable Table;
    private readonly IndexRing _immediate;   // finished without I/O, waiting to be reaped
    private readonly Action<FileQueue> _onDispose;
    private bool _disposed;

    protected FileQueue(FileTarget target, int depth, Action<FileQueue> onDispose)
    {
        if (depth < 1) throw new ArgumentOutOfRangeException(nameof(depth), depth, "a queue needs room for at least one request");
        Target = target; Stats = target.Stats; _onDispose = onDispose;
        Table = new SlotTable(depth);
        _immediate = new IndexRing(depth);
    }

    /// <inheritdoc/>
    public abstract SafeHandle? CompletionEvent { get; }
    /// <inheritdoc/>
    public int Depth => Table.Depth;
    /// <inheritdoc/>
    public int MaxVectors => IovMax;
    /// <summary>Requests submitted and not yet reaped.</summary>
    public int InFlight => Table.InFlight;
    /// <inheritdoc/>
    public virtual bool HasReadyCompletions => false;
    /// <summary>Which engine serves this queue (tests, logs).</summary>
    public abstract FileAioMode Mode { get; }

    /// <inheritdoc/>
    public void Submit(in BlockRequest request)
    {
        if (request.VectorCount > IovMax || request.VectorCount < 0)
            throw new ArgumentOutOfRangeException(nameof(request), request.VectorCount, $"at most {IovMax} vectors per request (MaxVectors)");
        int slot = Table.Take();
        ref var s = ref Table.Slots[slot];
        s.Request = request;
        Interlocked.Increment(ref Stats.submitted);
        int e = Target.Precheck(request);
        bool empty = request.Op is BlockOp.Read or BlockOp.Write or BlockOp.Discard or BlockOp.WriteZeroes && request.Length == 0;
        if (e != 0 || empty || request.Op > BlockOp.WriteZeroes)
        {
            s.Error = e != 0 ? e : empty ? 0 : BlockCompletion.NotSupported;
            _immediate.Push(slot);
            return;
        }
        if (Target.NeedsBounce(request))
        {
            s.Bounced = true;
            Interlocked.Increment(ref Stats.bounced);
        }
        Start(slot);
    }

    /// <summary>Begins (or queues for <see cref="Kick"/>) a request that passed the checks.</summary>
    protected abstract void Start(int slot);

    /// <summary>Records a request that finished without I/O (checked away, ignored flush).</summary>
    protected void FinishImmediately(int slot, int error)
    {
        Table.Slots[slot].Error = error;
        _immediate.Push(slot);
    }

    /// <summary>Immediate completions wait to be reaped.</summary>
    protected bool HasImmediate => _immediate.Count > 0;

    /// <inheritdoc/>
    public abstract void Kick();
    /// <inheritdoc/>
    public abstract int Reap(Span<BlockCompletion> completions);
    /// <inheritdoc/>
    public abstract bool WaitForCompletions(int timeoutMs);

    /// <summary>Moves immediate completions into <paramref name="into"/> from index <paramref name="n"/>.</summary>
    protected void ReapImmediate(Span<BlockCompletion> into, ref int n)
    {
        while (n < into.Length && _immediate.Count > 0) Complete(_immediate.Pop(), into, ref n);
    }

    /// <summary>Turns a finished slot (its Error set) into a completion and frees the slot.</summary>
    protected void Complete(int slot, Span<BlockCompletion> into, ref int n)
    {
        ref var s = ref Table.Slots[slot];
        into[n++] = new BlockCompletion(s.Request.Tag, s.Error);
        Interlocked.Increment(ref Stats.completed);
        if (s.Error != 0) Interlocked.Increment(ref Stats.errors);
        Table.Return(slot);
    }

    /// <summary>
    /// Waits (bounded by the storage's drain timeout) for requests still in flight, so that no memory the kernel or a
    /// worker may still write is freed; the device is supposed to have drained the queue already (IBlockQueue).
    /// </summary>
    protected void Drain(TimeSpan timeout)
    {
        Span<BlockCompletion> sink = stackalloc BlockCompletion[16];
        var deadline = DateTime.UtcNow + timeout;
        while (InFlight > 0 && DateTime.UtcNow < deadline)
            if (WaitForCompletions(50)) Reap(sink);
        if (InFlight > 0) Interlocked.Add(ref Stats.abandoned, InFlight);
    }

    /// <summary>Drains, then releases the engine (<see cref="Release"/>).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Release();
        _onDispose(this);
    }

    /// <summary>Drains and frees what the engine owns.</summary>
    protected abstract void Release();
}
