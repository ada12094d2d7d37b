using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Queues;

/// <summary>
/// Device side of a split virtqueue (virtio 1.2 §2.7). Every ring access goes through the device's memory view
/// <typeparamref name="TMem"/>; the driver is untrusted: indexes are bounded, chains are validated and copied once, and a
/// rule violation breaks the queue (the device then sets DEVICE_NEEDS_RESET) instead of looping or touching memory the
/// translation refuses.
/// </summary>
public sealed class DeviceQueue<TMem> where TMem : struct, IDeviceMemory
{
    private readonly TMem _mem;
    private readonly SplitRingLayout _layout;
    private readonly QueueOptions _options;
    private readonly int _mask;
    private readonly ushort _size;
    private readonly int _maxChain;            // copies of option fields read on every pop
    private readonly bool _platformBarriers;
    private readonly DescriptorChain[] _all;   // every chain object, for reset
    private readonly DescriptorChain[] _pool;  // free stack
    private int _poolCount;
    private int _inFlight;
    private ushort _nextAvail;
    private ushort _availIdxShadow;
    private ushort _nextUsed;
    private ushort _signalledUsed;
    private bool _signalledUsedValid = true;
    private bool _notificationsEnabled = true;

    public DeviceQueue(TMem memory, SplitRingLayout layout, QueueOptions options)
    {
        if (!SplitRingLayout.IsValidSize(layout.QueueSize))
            throw new ArgumentOutOfRangeException(nameof(layout), $"split queue size {layout.QueueSize} must be a power of two between 1 and 32768 (virtio 1.2 §2.7)");
        _mem = memory;
        _layout = layout;
        _options = options;
        _mask = layout.QueueSize - 1;
        _size = layout.QueueSize;
        _maxChain = options.MaxChainLength;
        _platformBarriers = options.Barriers == Dma.BarrierKind.Platform;
        _all = new DescriptorChain[layout.QueueSize];
        for (int i = 0; i < _all.Length; i++) _all[i] = new DescriptorChain(8);
        _pool = (DescriptorChain[])_all.Clone();
        _poolCount = _pool.Length;
    }

    public ushort Size => _size;
    public SplitRingLayout Layout => _layout;
    public TMem Memory => _mem;
    /// <summary>Index of the next avail entry to process (vhost-user GET/SET_VRING_BASE).</summary>
    public ushort NextAvail => _nextAvail;
    public ushort NextUsed => _nextUsed;
    public int InFlight => _inFlight;
    public bool IsBroken => Error != QueueError.None;
    public QueueError Error { get; private set; }
    public string? ErrorDetail { get; private set; }

    /// <summary>Restores ring positions after a reconnect or migration (vhost-user SET_VRING_BASE).</summary>
    public void SetBase(ushort nextAvail, ushort nextUsed)
    {
        _nextAvail = nextAvail;
        _availIdxShadow = nextAvail;
        _nextUsed = nextUsed;
        _signalledUsed = nextUsed;
        // Whoever used the ring before (a back-end that crashed, §2.7.10's "old" value of another process) may have
        // published used entries without interrupting; the driver's used_event then stays behind nextUsed and
        // EVENT_IDX suppression would never fire again. Like Linux vhost's signalled_used_valid, the first
        // completion after a restore always interrupts.
        _signalledUsedValid = false;
    }

    /// <summary>Checks that the three ring areas are reachable with the access each needs (queue setup, §2.7).</summary>
    public MemStatus CheckRings()
    {
        var st = _mem.Check(_layout.Desc, SplitRingLayout.DescBytes(Size), Access.Read);
        if (st == MemStatus.Ok) st = _mem.Check(_layout.Avail, SplitRingLayout.AvailBytes(Size), Access.Read);
        if (st == MemStatus.Ok) st = _mem.Check(_layout.Used, SplitRingLayout.UsedBytes(Size), Access.ReadWrite);
        return st;
    }

    private QueueStatus Fail(QueueError error, string detail)
    {
        Error = error;
        ErrorDetail = detail;
        return QueueStatus.Broken;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailMem(MemStatus st, string what, ulong addr) =>
        Fail(QueueError.RingAccessFault, $"{what} at 0x{addr:x}: {st.Describe()}");

    /// <summary>True if the driver made chains available that were not popped yet (re-reads avail idx).</summary>
    public bool HasAvailable()
    {
        if (IsBroken) return false;
        if (_availIdxShadow != _nextAvail) return true;
        if (_mem.LoadU16Acquire(_layout.AvailIdxAddr, out ushort idx) != MemStatus.Ok) return false;
        return _layout.Endian.Fix(idx) != _nextAvail;
    }

    /// <summary>Records chains in flight in memory that outlives the device process (vhost-user inflight region).</summary>
    public IInflightLog? Inflight { get; set; }

    private Queue<ushort>? _resubmit;

    /// <summary>
    /// Heads that were popped but never used before a restart; <see cref="Pop"/> returns them first, in this order,
    /// without consuming avail entries again (vhost-user inflight I/O tracking).
    /// </summary>
    public void Resubmit(IEnumerable<ushort> heads)
    {
        _resubmit ??= new Queue<ushort>();
        foreach (var h in heads)
            if (h < _size) _resubmit.Enqueue(h);
    }

    /// <summary>Takes the next available chain, validated and copied (§2.7.13).</summary>
    public QueueStatus Pop(out DescriptorChain? chain)
    {
        chain = null;
        if (IsBroken) return QueueStatus.Broken;
        if (_resubmit is { Count: > 0 }) return PopResubmitted(out chain);
        if (_availIdxShadow == _nextAvail)
        {
            var st = _mem.LoadU16Acquire(_layout.AvailIdxAddr, out ushort raw);
            if (st != MemStatus.Ok) return FailMem(st, "reading avail idx", _layout.AvailIdxAddr);
            ushort idx = _layout.Endian.Fix(raw);
            // §2.7.13.3: the driver can never be more than a queue's worth ahead.
            if ((ushort)(idx - _nextAvail) > _size) return FailPop(QueueError.AvailIndexTooFarAhead, idx);
            _availIdxShadow = idx;
            if (idx == _nextAvail) return QueueStatus.Empty;
        }
        if (_inFlight >= _size) return FailPop(QueueError.TooManyInFlight, 0);

        // Ring entries are 2-byte aligned whenever avail idx (read above) was, so a typed load can read one.
        ulong slotAddr = _layout.AvailRingAddr(_nextAvail & _mask);
        var rs = _mem.LoadU16Acquire(slotAddr, out ushort rawHead);
        if (rs != MemStatus.Ok) return FailMem(rs, "reading avail ring", slotAddr);
        ushort head = _layout.Endian.Fix(rawHead);
        if (head >= _size) return FailPop(QueueError.HeadOutOfRange, head);

        var c = _pool[--_poolCount];
        c.Reset();
        var result = Walk(c, head);
        if (result != QueueStatus.Ok)
        {
            _poolCount++;
            return result;
        }
        c.Head = head;
        c.InFlight = true;
        _inFlight++;
        _nextAvail++;
        Inflight?.Popped(head);
        chain = c;
        return QueueStatus.Ok;
    }

    private QueueStatus PopResubmitted(out DescriptorChain? chain)
    {
        chain = null;
        if (_inFlight >= _size) return FailPop(QueueError.TooManyInFlight, 0);
        ushort head = _resubmit!.Dequeue();
        var c = _pool[--_poolCount];
        c.Reset();
        var result = Walk(c, head);
        if (result != QueueStatus.Ok)
        {
            _poolCount++;
            return result;
        }
        c.Head = head;
        c.InFlight = true;
        _inFlight++;
        chain = c;
        return QueueStatus.Ok;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailPop(QueueError error, ushort value) => error switch
    {
        QueueError.AvailIndexTooFarAhead => Fail(error, $"avail idx {value} is {(ushort)(value - _nextAvail)} entries ahead of {_nextAvail}, more than the queue size {Size}"),
        QueueError.TooManyInFlight => Fail(error, $"more than {Size} chains in flight: the driver made a head available again before it was used"),
        _ => Fail(error, $"avail ring entry {_nextAvail} names head {value}, but the queue has {Size} descriptors"),
    };

    private QueueStatus Walk(DescriptorChain c, ushort head)
    {
        ulong table = _layout.Desc;
        int tableSize = _size;
        int ttl = _size;         // a chain can visit each descriptor of its table once: more is a loop
        bool indirect = false;
        bool sawWritable = false;
        int descs = 0;
        ulong total = 0;
        uint idx = head;
        VirtqDesc d = default;
        var dBytes = MemoryMarshal.AsBytes(new Span<VirtqDesc>(ref d));
        while (true)
        {
            ulong addr = table + idx * (ulong)VirtqDesc.Size;
            var st = _mem.Read(addr, dBytes);
            if (st != MemStatus.Ok) return WalkFail(QueueError.RingAccessFault, head, idx, default, indirect, tableSize, st, addr);
            var desc = d.WithEndian(_layout.Endian);   // a private copy: the driver cannot change it under us
            var flags = (DescFlags)desc.Flags;
            if (++descs > _maxChain) return WalkFail(QueueError.ChainTooLong, head, idx, default, indirect, tableSize, st, addr);

            if ((flags & DescFlags.Indirect) != 0)
            {
                QueueError bad =
                    indirect ? QueueError.NestedIndirect :
                    (flags & DescFlags.Next) != 0 ? QueueError.IndirectWithNext :
                    c.Count != 0 || idx != head ? QueueError.IndirectNotAtHead :
                    desc.Len == 0 || desc.Len % VirtqDesc.Size != 0 ? QueueError.IndirectBadLength :
                    desc.Len / VirtqDesc.Size > (uint)_maxChain ? QueueError.ChainTooLong :
                    QueueError.None;
                if (bad != QueueError.None) return WalkFail(bad, head, idx, desc, indirect, tableSize, st, addr);
                st = _mem.Check(desc.Addr, desc.Len, Access.Read);
                if (st != MemStatus.Ok) return WalkFail(QueueError.AddressRefused, head, idx, desc, true, tableSize, st, addr);
                indirect = true;
                table = desc.Addr;
                tableSize = (int)(desc.Len / VirtqDesc.Size);
                ttl = tableSize;
                idx = 0;
                continue;
            }

            bool writable = (flags & DescFlags.Write) != 0;
            if (writable) sawWritable = true;
            else if (sawWritable) return WalkFail(QueueError.ReadableAfterWritable, head, idx, desc, indirect, tableSize, st, addr);
            total += desc.Len;
            if (total > uint.MaxValue) return WalkFail(QueueError.ChainTooManyBytes, head, idx, desc, indirect, tableSize, st, addr);
            if (desc.Len != 0)
            {
                st = _mem.Check(desc.Addr, desc.Len, writable ? Access.Write : Access.Read);
                if (st != MemStatus.Ok) return WalkFail(QueueError.AddressRefused, head, idx, desc, false, tableSize, st, addr);
            }
            c.Add(desc.Addr, desc.Len, writable);

            if ((flags & DescFlags.Next) == 0) break;
            if (desc.Next >= tableSize) return WalkFail(QueueError.NextOutOfRange, head, idx, desc, indirect, tableSize, st, addr);
            if (--ttl == 0) return WalkFail(QueueError.ChainLoop, head, idx, desc, indirect, tableSize, st, addr);
            idx = desc.Next;
        }
        c.RingDescriptors = 1;
        return QueueStatus.Ok;
    }

    // Messages are built out of line: their string-building locals would otherwise sit in (and be zeroed by) Walk's frame.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus WalkFail(QueueError error, ushort head, uint idx, VirtqDesc desc, bool indirect, int tableSize, MemStatus st, ulong addr)
    {
        var flags = (DescFlags)desc.Flags;
        bool writable = (flags & DescFlags.Write) != 0;
        return error switch
        {
            QueueError.RingAccessFault => FailMem(st, indirect ? "reading indirect descriptor" : "reading descriptor", addr),
            QueueError.ChainTooLong when (flags & DescFlags.Indirect) != 0 && !indirect && desc.Len / VirtqDesc.Size > (uint)_maxChain =>
                Fail(error, $"indirect table of {desc.Len / VirtqDesc.Size} entries exceeds the {_maxChain}-descriptor limit"),
            QueueError.ChainTooLong => Fail(error, $"chain at head {head} is longer than {_maxChain} descriptors"),
            QueueError.NestedIndirect => Fail(error, $"indirect descriptor inside the indirect table of head {head} (§2.7.5.3.1)"),
            QueueError.IndirectWithNext => Fail(error, $"descriptor {idx} has both INDIRECT and NEXT (§2.7.5.3.1)"),
            QueueError.IndirectNotAtHead => Fail(error, $"indirect descriptor {idx} is not the head of its chain"),
            QueueError.IndirectBadLength => Fail(error, $"indirect table length {desc.Len} is not a non-zero multiple of 16"),
            QueueError.AddressRefused when indirect => Fail(error, $"indirect table 0x{desc.Addr:x}+{desc.Len}: {st.Describe()}"),
            QueueError.AddressRefused => Fail(error, $"buffer 0x{desc.Addr:x}+{desc.Len} ({(writable ? "write" : "read")}) of head {head}: {st.Describe()}"),
            QueueError.ReadableAfterWritable => Fail(error, $"descriptor {idx} of head {head} is device-readable after a device-writable one (§2.7.4.2)"),
            QueueError.ChainTooManyBytes => Fail(error, $"chain at head {head} describes more than 4 GiB"),
            QueueError.NextOutOfRange => Fail(error, $"descriptor {idx} links to {desc.Next}, beyond the {tableSize}-entry {(indirect ? "indirect table" : "descriptor table")}"),
            QueueError.ChainLoop => Fail(error, $"chain at head {head} loops (more links than descriptors)"),
            _ => Fail(error, $"descriptor {idx} of head {head}: {error}"),
        };
    }

    /// <summary>Returns a chain to the driver with the number of bytes the device wrote (§2.7.8).</summary>
    public QueueStatus AddUsed(DescriptorChain chain, uint written)
    {
        if (!chain.InFlight || written > chain.WritableBytes) ThrowBadUsed(chain, written);
        chain.InFlight = false;
        _inFlight--;
        _pool[_poolCount++] = chain;
        if (IsBroken) return QueueStatus.Broken;
        VirtqUsedElem e;
        e.Id = _layout.Endian.Fix((uint)chain.Head);
        e.Len = _layout.Endian.Fix(written);
        ulong addr = _layout.UsedRingAddr(_nextUsed & _mask);
        Inflight?.Using(chain.Head);
        var st = _mem.Write(addr, MemoryMarshal.AsBytes(new ReadOnlySpan<VirtqUsedElem>(ref e)));
        if (st != MemStatus.Ok) return FailMem(st, "writing used ring", addr);
        // The element must be visible before the index that publishes it (release store).
        _nextUsed++;
        if (_platformBarriers) Interlocked.MemoryBarrier();
        st = _mem.StoreU16Release(_layout.UsedIdxAddr, _layout.Endian.Fix(_nextUsed));
        if (st != MemStatus.Ok) return FailMem(st, "writing used idx", _layout.UsedIdxAddr);
        Inflight?.Used(chain.Head, _nextUsed);
        return QueueStatus.Ok;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadUsed(DescriptorChain chain, uint written) =>
        throw (!chain.InFlight
            ? new VirtqueueException($"{chain} is not in flight on this queue (used twice?)")
            : new VirtqueueException($"used length {written} exceeds the {chain.WritableBytes} writable bytes of {chain}"));

    /// <summary>Should the device interrupt the driver for what it used since the last call? (§2.7.10)</summary>
    public bool NeedsInterrupt()
    {
        if (IsBroken) return false;
        // The used idx store must be ordered before reading the driver's suppression state.
        Interlocked.MemoryBarrier();
        ushort old = _signalledUsed;
        _signalledUsed = _nextUsed;
        if (old == _nextUsed) return false;
        if (!_signalledUsedValid) { _signalledUsedValid = true; return true; }
        if (_options.EventIdx)
        {
            if (_mem.LoadU16Acquire(_layout.UsedEventAddr, out ushort ev) != MemStatus.Ok) return true;
            return EventIdx.NeedEvent(_layout.Endian.Fix(ev), _nextUsed, old);
        }
        if (_mem.LoadU16Acquire(_layout.AvailFlagsAddr, out ushort flags) != MemStatus.Ok) return true;
        return (_layout.Endian.Fix(flags) & RingFlags.AvailNoInterrupt) == 0;
    }

    /// <summary>Asks the driver not to notify (VIRTQ_USED_F_NO_NOTIFY, or avail_event far behind with EVENT_IDX).</summary>
    public void DisableNotifications()
    {
        if (!_notificationsEnabled || IsBroken) return;
        _notificationsEnabled = false;
        if (!_options.EventIdx) _mem.StoreU16Release(_layout.UsedFlagsAddr, _layout.Endian.Fix(RingFlags.UsedNoNotify));
    }

    /// <summary>
    /// Asks for notifications again; returns true if chains became available meanwhile, so the caller must keep
    /// processing instead of sleeping (the classic lost-wakeup race).
    /// </summary>
    public bool EnableNotifications()
    {
        if (IsBroken) return false;
        _notificationsEnabled = true;
        if (_options.EventIdx) _mem.StoreU16Release(_layout.AvailEventAddr, _layout.Endian.Fix(_availIdxShadow));
        else _mem.StoreU16Release(_layout.UsedFlagsAddr, 0);
        Interlocked.MemoryBarrier();
        return HasAvailable();
    }

    /// <summary>Forgets every chain in flight (device reset): their buffers are never used.</summary>
    public void Reset()
    {
        for (int i = 0; i < _all.Length; i++) { _all[i].InFlight = false; _pool[i] = _all[i]; }
        _poolCount = _pool.Length;
        _inFlight = 0;
        _nextAvail = _availIdxShadow = _nextUsed = _signalledUsed = 0;
        _signalledUsedValid = true;
        _resubmit?.Clear();
        Error = QueueError.None;
        ErrorDetail = null;
        _notificationsEnabled = true;
    }
}
