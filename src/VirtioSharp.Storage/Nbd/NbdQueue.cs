using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// One virtqueue's channel to an <see cref="NbdConnection"/>: preallocated slots, a free list and a pending list that
/// only the owner thread touches, and a completion ring the connection's receiver fills under the connection lock,
/// announced on a non-blocking eventfd. Submit/Kick/Reap never wait on the network.
/// </summary>
internal sealed unsafe class NbdQueue : IBlockQueue
{
    private readonly NbdConnection _conn;
    private readonly NbdExport _export;
    private readonly uint _payloadLimit;
    private readonly bool _readOnly;
    private readonly NbdCounters _counters;
    private readonly NbdSlot[] _slots;
    private readonly int[] _free;
    private int _freeCount;
    private NbdSlot? _pendingHead, _pendingTail;
    private readonly EventFd _event;
    // Completion ring of slot indices: guarded by the connection lock.
    private readonly int[] _done;
    private int _doneHead, _doneCount;
    private bool _signaled;
    private bool _disposed;

    public NbdQueue(NbdConnection conn, int index, int depth, NbdExport export, uint payloadLimit, bool readOnly, NbdCounters counters)
    {
        _conn = conn;
        Index = index;
        _export = export;
        _payloadLimit = payloadLimit;
        _readOnly = readOnly;
        _counters = counters;
        _slots = new NbdSlot[depth];
        _free = new int[depth];
        _done = new int[depth];
        for (int i = 0; i < depth; i++)
        {
            _slots[i] = new NbdSlot(this, i);
            _free[i] = depth - 1 - i;
        }
        _freeCount = depth;
        _event = EventFd.Create(nonBlocking: true);
    }

    /// <summary>The queue's number (it is part of every cookie).</summary>
    public int Index { get; }
    public NbdSlot[] Slots => _slots;
    public SafeHandle? CompletionEvent => _event.Handle;
    public int Depth => _slots.Length;
    public int MaxVectors => 1024;

    public void Submit(in BlockRequest r)
    {
        if (_freeCount == 0) throw new InvalidOperationException($"more than {_slots.Length} requests submitted before they were reaped");
        var slot = _slots[_free[--_freeCount]];
        slot.Generation++;
        slot.Op = r.Op;
        slot.Offset = r.Offset;
        slot.Length = r.Length;
        slot.Vectors = r.Vectors;
        slot.VectorCount = r.VectorCount;
        slot.Tag = r.Tag;
        slot.Error = 0;
        slot.Resends = 0;
        slot.Sent = false;
        slot.WindowBase = 0;
        slot.NextPart = 0;
        slot.InFlightMask = 0;
        slot.DoneMask = 0;
        slot.TrailingFlush = false;
        slot.DeferredComplete = false;
        Interlocked.Increment(ref _counters.Requests);
        int error = Prepare(slot, r.Flags);
        slot.State = NbdSlotState.Pending;
        if (error != 0) slot.Error = error;
        slot.NextPending = null;
        if (_pendingTail == null) _pendingHead = slot; else _pendingTail.NextPending = slot;
        _pendingTail = slot;
    }

    /// <summary>Turns the request into NBD commands; a nonzero errno completes it without sending, 0 with PartCount 0 succeeds at once.</summary>
    private int Prepare(NbdSlot s, BlockRequestFlags flags)
    {
        uint align = _export.Alignment;
        bool fua = (flags & BlockRequestFlags.Fua) != 0;
        s.CommandFlags = 0;
        switch (s.Op)
        {
            case BlockOp.Read:
            case BlockOp.Write:
                if (s.Op == BlockOp.Write && _readOnly) return 30;   // EROFS
                if (!VectorsMatch(s)) return NbdProtocol.EInval;
                s.Command = s.Op == BlockOp.Read ? NbdProtocol.CmdRead : NbdProtocol.CmdWrite;
                s.PartSize = _payloadLimit;
                if (s.Op == BlockOp.Write && fua)
                {
                    if (_export.Has(NbdProtocol.TxSendFua)) s.CommandFlags = NbdProtocol.CmdFlagFua;
                    else if (_export.Has(NbdProtocol.TxSendFlush)) s.TrailingFlush = true;
                }
                break;
            case BlockOp.Flush:
                // Without NBD_FLAG_SEND_FLUSH the client MUST NOT flush; the server then has no cache to flush.
                if (!_export.Has(NbdProtocol.TxSendFlush) || _readOnly) { s.PartCount = 0; return 0; }
                s.Command = NbdProtocol.CmdFlush;
                s.PartSize = 0;
                s.PartCount = 1;
                s.Offset = 0;
                s.Length = 0;
                return 0;
            case BlockOp.Discard:
                if (_readOnly) return 30;
                if (!_export.Has(NbdProtocol.TxSendTrim)) return BlockCompletion.NotSupported;
                s.Command = NbdProtocol.CmdTrim;
                s.PartSize = EffectLimit(align);
                break;
            case BlockOp.WriteZeroes:
                if (_readOnly) return 30;
                if (!_export.Has(NbdProtocol.TxSendWriteZeroes)) return BlockCompletion.NotSupported;
                s.Command = NbdProtocol.CmdWriteZeroes;
                s.PartSize = EffectLimit(align);
                // NO_HOLE keeps the range allocated; without UNMAP the guest did not allow deallocation.
                if ((flags & BlockRequestFlags.Unmap) == 0) s.CommandFlags |= NbdProtocol.CmdFlagNoHole;
                if (fua && _export.Has(NbdProtocol.TxSendFua)) s.CommandFlags |= NbdProtocol.CmdFlagFua;
                break;
            default:
                return BlockCompletion.NotSupported;
        }
        // Offsets and lengths MUST be multiples of the minimum block size and stay inside the export ("Size constraints").
        if (s.Offset % align != 0 || s.Length % align != 0) return NbdProtocol.EInval;
        if (s.Offset > _export.Size || s.Length > _export.Size - s.Offset) return NbdProtocol.EInval;
        if (s.Length == 0) { s.PartCount = 0; return 0; }
        ulong parts = (s.Length + s.PartSize - 1) / s.PartSize;
        if (parts > NbdCookie.MaxParts - 1) return NbdProtocol.EInval;
        s.PartCount = (int)parts + (s.TrailingFlush ? 1 : 0);
        return 0;
    }

    /// <summary>TRIM/WRITE_ZEROES carry no payload and may exceed the maximum payload, but their length field is 32 bits.</summary>
    private static ulong EffectLimit(uint align) => (1UL << 30) / align * align;

    private static bool VectorsMatch(NbdSlot s)
    {
        if (s.VectorCount < 0 || (s.VectorCount > 0 && s.Vectors == null)) return false;
        ulong sum = 0;
        for (int i = 0; i < s.VectorCount; i++)
        {
            ulong len = s.Vectors[i].Length;
            if (len > s.Length - sum) return false;
            sum += len;
        }
        return sum == s.Length;
    }

    public void Kick()
    {
        if (_pendingHead == null) return;
        var head = _pendingHead;
        _pendingHead = _pendingTail = null;
        _conn.Start(head);
    }

    public int Reap(Span<BlockCompletion> completions)
    {
        // Drain before looking, so a completion posted after the look re-arms the eventfd (no lost wake-up).
        _event.DrainIfReadable();
        int n = 0;
        lock (_conn.Gate)
        {
            _signaled = false;
            while (n < completions.Length && _doneCount > 0)
            {
                var slot = _slots[_done[_doneHead]];
                _doneHead = (_doneHead + 1) % _done.Length;
                _doneCount--;
                completions[n++] = new BlockCompletion(slot.Tag, slot.Error);
                if (slot.Error != 0) Interlocked.Increment(ref _counters.Failed);
                slot.State = NbdSlotState.Free;
                slot.Vectors = null;
                _free[_freeCount++] = slot.Index;
            }
            if (_doneCount > 0) Signal();
        }
        return n;
    }

    public bool WaitForCompletions(int timeoutMs)
    {
        lock (_conn.Gate) if (_doneCount > 0) return true;
        return EventFd.WaitAny([_event.Handle], timeoutMs) >= 0;
    }

    /// <summary>Posts <paramref name="slot"/>'s completion; caller holds the connection lock.</summary>
    public void PostCompletion(NbdSlot slot)
    {
        slot.State = NbdSlotState.Done;
        slot.InSendQueue = false;
        _done[(_doneHead + _doneCount++) % _done.Length] = slot.Index;
        if (!_signaled) Signal();
    }

    private void Signal()
    {
        _signaled = true;
        if (!_disposed) _event.Signal();
    }

    public void Dispose()
    {
        lock (_conn.Gate) _disposed = true;
        _conn.Unregister(this);
        _event.Dispose();
    }
}
