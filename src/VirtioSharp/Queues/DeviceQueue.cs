// Over 400 lines on purpose: the split device ring is one hot-path type (pop, walk, used, suppression) so the JIT
// inlines across it with no call between the steps of a request; its vhost-only restore members are internal.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Queues;

/// <summary>
/// Device side of a virtqueue: split (virtio 1.2 §2.7) or, when <see cref="QueueOptions.Packed"/> is set, packed (§2.8, in
/// <see cref="PackedDeviceRing{TMem}"/>); device models see one API either way. Every ring access goes through the device's memory view
/// <typeparamref name="TMem"/>; the driver is untrusted: indexes are bounded, chains are validated and copied once, and a
/// rule violation breaks the queue (the device then sets DEVICE_NEEDS_RESET) instead of looping or touching memory the
/// translation refuses.
/// </summary>
public sealed class DeviceQueue<TMem> where TMem : struct, IDeviceMemory
{
    // Packed layout: a sealed type behind a null check, so the split path pays one predictable branch, no dispatch.
    private readonly PackedDeviceRing<TMem>? _packed;
    private readonly TMem _mem;
    private readonly SplitRingLayout _layout;
    private readonly QueueOptions _options;
    private readonly int _mask;
    private readonly ushort _size;
    private readonly int _maxChain;            // copies of option fields read on every pop
    private readonly Dma.BarrierKind _barriers;
    private readonly bool _inOrder;
    private readonly DescriptorChain[] _all;   // every chain object, for reset
    private readonly DescriptorChain[] _pool;  // free stack
    private readonly ulong[] _headsInFlight;   // split: one bit a head popped and not yet used
    private int _poolCount;
    private int _inFlight;
    private ushort _nextAvail;
    private ushort _availIdxShadow;
    private ushort _nextUsed;
    private ushort _signalledUsed;
    private bool _signalledUsedValid = true;
    private long _suppressedInterrupts;
    private bool _notificationsEnabled = true;
    private int _availEventWritten = -1;       // last avail_event stored by Pop (EVENT_IDX), to store each value once
    private uint _popSeq, _usedSeq;
    // Used elements produced while a pause cut a translation short (MemStatus.Interrupted), oldest first, covering
    // the used slots from _usedPublished to _nextUsed; published before anything newer (rare: allocated on first need).
    private UsedElement[]? _unpublished;
    private int _unpublishedCount;
    private ushort _usedPublished;             // used idx the driver has been shown
    private bool _usedLeftToLog;               // with an inflight log: interrupted uses stay in flight there instead
    private QueueError _error;
    private string? _errorDetail;

    /// <summary>
    /// <paramref name="layout"/> gives the three areas; for a packed ring (<see cref="QueueOptions.Packed"/>) they are the
    /// descriptor ring, the driver event suppression area and the device event suppression area (§2.8.10).
    /// </summary>
    public DeviceQueue(TMem memory, SplitRingLayout layout, QueueOptions options)
    {
        _mem = memory;
        _layout = layout;
        _options = options;
        _size = layout.QueueSize;
        if (options.Packed)
        {
            _packed = new PackedDeviceRing<TMem>(memory, layout, options);
            _all = _pool = [];
            _headsInFlight = [];
            return;
        }
        if (!SplitRingLayout.IsValidSize(layout.QueueSize))
            throw new ArgumentOutOfRangeException(nameof(layout), $"split queue size {layout.QueueSize} must be a power of two between 1 and 32768 (virtio 1.2 §2.7)");
        _mask = layout.QueueSize - 1;
        _inOrder = options.InOrder;
        _maxChain = options.MaxChainLength;
        _barriers = options.Barriers;
        _all = new DescriptorChain[layout.QueueSize];
        for (int i = 0; i < _all.Length; i++) _all[i] = new DescriptorChain(8);
        _pool = (DescriptorChain[])_all.Clone();
        _poolCount = _pool.Length;
        _headsInFlight = new ulong[(layout.QueueSize + 63) / 64];
    }

    /// <summary>Entries in the ring (the queue size the driver set).</summary>
    public ushort Size => _size;
    /// <summary>Where the ring's areas are in the device's address space.</summary>
    public SplitRingLayout Layout => _layout;
    /// <summary>The device's address space: every access of the device goes through it.</summary>
    public TMem Memory => _mem;
    /// <summary>True for a packed ring (§2.8).</summary>
    public bool IsPacked => _packed is not null;
    /// <summary>The negotiated ring options.</summary>
    public QueueOptions Options => _options;
    /// <summary>Index of the next avail entry to process (vhost-user GET/SET_VRING_BASE). Packed: the ring offset.</summary>
    public ushort NextAvail => _packed is { } p ? p.NextAvail : _nextAvail;
    /// <summary>
    /// Index (split) or ring offset (packed) of the next used entry the driver will see: entries still waiting to be
    /// published (<see cref="UnpublishedUsed"/>) come after it.
    /// </summary>
    public ushort NextUsed => _packed is { } p ? p.NextUsed : _usedPublished;
    /// <summary>Chains popped and not yet used.</summary>
    public int InFlight => _packed is { } p ? p.InFlight : _inFlight;
    /// <summary>True once the driver broke a ring rule; the queue then stays broken until reset.</summary>
    public bool IsBroken => Error != QueueError.None;
    /// <summary>The rule the driver broke, or None.</summary>
    public QueueError Error => _packed is { } p ? p.Error : _error;
    /// <summary>What exactly was wrong (indexes, addresses), for the log.</summary>
    public string? ErrorDetail => _packed is { } p ? p.ErrorDetail : _errorDetail;
    /// <summary>Packed: the device's avail and used wrap counters (§2.8.1); always true for split.</summary>
    public bool AvailWrapCounter => _packed?.AvailWrap ?? true;
    /// <summary>Packed: the used wrap counter (§2.8.1); always true for split.</summary>
    public bool UsedWrapCounter => _packed?.UsedWrap ?? true;

    /// <summary>
    /// Packed rings' vhost-user GET_VRING_BASE value as QEMU 7.2 encodes it: next avail offset in bits 0-14, avail wrap
    /// counter in bit 15, next used offset in bits 16-30, used wrap counter in bit 31. Split: next avail | next used &lt;&lt; 16.
    /// </summary>
    internal uint PackedBase => _packed is { } p ? p.Base : _nextAvail | (uint)_usedPublished << 16;

    /// <summary>Packed rings' SET_VRING_BASE (encoding of <see cref="PackedBase"/>); offsets past the ring are refused.</summary>
    internal void SetPackedBase(uint value)
    {
        if (_packed is { } p) p.SetBase(value);
        else SetBase((ushort)value, (ushort)(value >> 16));
    }

    /// <summary>Restores ring positions after a reconnect or migration (vhost-user SET_VRING_BASE).</summary>
    internal void SetBase(ushort nextAvail, ushort nextUsed)
    {
        if (_packed is { } p)
        {
            // Without wrap bits the counters are taken as 1 (a ring that has not wrapped); use SetPackedBase to give them.
            p.SetBase((uint)(nextAvail & 0x7FFF) | 1u << 15 | (uint)(nextUsed & 0x7FFF) << 16 | 1u << 31);
            return;
        }
        _nextAvail = nextAvail;
        _availIdxShadow = nextAvail;
        _nextUsed = _usedPublished = nextUsed;
        _unpublishedCount = 0;
        _usedLeftToLog = false;
        _signalledUsed = nextUsed;
        _availEventWritten = -1;
        // Whoever used the ring before (a back-end that crashed, §2.7.10's "old" value of another process) may have
        // published used entries without interrupting; the driver's used_event then stays behind nextUsed and
        // EVENT_IDX suppression would never fire again. Like Linux vhost's signalled_used_valid, the first
        // completion after a restore always interrupts.
        _signalledUsedValid = false;
    }

    /// <summary>Where the queue stands now (read it once its owner thread has stopped).</summary>
    public QueuePosition Position => _packed is { } p
        ? new QueuePosition(p.NextAvail, p.AvailWrap, p.NextUsed, p.UsedWrap)
        : QueuePosition.Split(_nextAvail, _usedPublished);

    /// <summary>
    /// Used entries the device produced while the ring was being paused (a translation cut short,
    /// <see cref="MemStatus.Interrupted"/>), oldest first, not yet visible to the driver; null if none. Whoever runs the
    /// ring next passes them in <see cref="QueueRestore.Unpublished"/> and the restored queue publishes them first, after
    /// <see cref="Position"/>. With an inflight log nothing waits here: the interrupted chains stay in flight in the log,
    /// which hands them out again.
    /// </summary>
    public UsedElement[]? UnpublishedUsed => _packed is { } p ? p.UnpublishedUsed
        : _unpublishedCount == 0 ? null : _unpublished.AsSpan(0, _unpublishedCount).ToArray();

    /// <summary>
    /// Continues from <paramref name="restore"/> before the queue is served: position, chains to hand out again,
    /// inflight log. A packed offset past the ring or a recovered chain that does not fit is refused with
    /// <see cref="ArgumentException"/> or <see cref="InvalidDataException"/>; nothing read from the peer is trusted.
    /// </summary>
    public void Restore(QueueRestore restore)
    {
        ArgumentNullException.ThrowIfNull(restore);
        var pos = restore.Position;
        if (_packed is { } p)
        {
            if (restore.ResubmitHeads is { Count: > 0 } || restore.Log is not null)
                throw new ArgumentException("a packed ring resumes from ResubmitChains and PackedLog, not split heads or a split log", nameof(restore));
            p.SetBase((uint)(pos.NextAvail & 0x7FFF) | (pos.AvailWrap ? 1u << 15 : 0) | (uint)(pos.NextUsed & 0x7FFF) << 16 | (pos.UsedWrap ? 1u << 31 : 0));
            if (restore.ResubmitChains is { } chains) p.Restore(pos.NextUsed, pos.UsedWrap, chains);
            p.Log = restore.PackedLog;
            if (restore.Unpublished is { Count: > 0 } pending) p.Publish(pending);
            return;
        }
        if (restore.ResubmitChains is { Count: > 0 } || restore.PackedLog is not null)
            throw new ArgumentException("a split ring resumes from ResubmitHeads and Log, not packed chains or a packed log", nameof(restore));
        SetBase(pos.NextAvail, pos.NextUsed);
        if (restore.ResubmitHeads is { } heads) Resubmit(heads);
        Inflight = restore.Log;
        if (restore.Unpublished is { Count: > 0 } unpublished)
        {
            int slots = 0;
            foreach (var u in unpublished)
            {
                if (u.Id >= _size || u.Slots == 0 || (slots += u.Slots) > _size)
                    throw new ArgumentException($"unpublished used element {u} does not fit the {_size}-entry ring", nameof(restore));
                if (Defer(u) != QueueStatus.Ok) return;
            }
            PublishUnpublished();
        }
    }

    /// <summary>Checks that the three ring areas are reachable with the access each needs (queue setup, §2.7).</summary>
    public MemStatus CheckRings()
    {
        if (_packed is { } p) return p.CheckRings();
        var st = _mem.Check(_layout.Desc, SplitRingLayout.DescBytes(Size), Access.Read);
        if (st == MemStatus.Ok) st = _mem.Check(_layout.Avail, SplitRingLayout.AvailBytes(Size), Access.Read);
        if (st == MemStatus.Ok) st = _mem.Check(_layout.Used, SplitRingLayout.UsedBytes(Size), Access.ReadWrite);
        return st;
    }

    private QueueStatus Fail(QueueError error, string detail)
    {
        _error = error;
        _errorDetail = detail;
        return QueueStatus.Broken;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailMem(MemStatus st, string what, ulong addr) =>
        Fail(QueueError.RingAccessFault, $"{what} at 0x{addr:x}: {st.Describe()}");

    /// <summary>True if the driver made chains available that were not popped yet (re-reads avail idx).</summary>
    public bool HasAvailable()
    {
        if (_packed is { } p) return p.HasAvailable();
        if (IsBroken) return false;
        if (_availIdxShadow != _nextAvail) return true;
        if (_mem.LoadU16Acquire(_layout.AvailIdxAddr, out ushort idx) != MemStatus.Ok) return false;
        return _layout.Endian.Fix(idx) != _nextAvail;
    }

    /// <summary>Records chains in flight in memory that outlives the device process (vhost-user inflight region).</summary>
    internal IInflightLog? Inflight { get; set; }

    private Queue<ushort>? _resubmit;

    /// <summary>Packed rings' inflight log (vhost-user inflight region, packed layout); split rings use <see cref="Inflight"/>.</summary>
    internal IPackedInflightLog? PackedInflight
    {
        get => _packed?.Log;
        set => (_packed ?? throw new VirtqueueException("a split ring records inflight chains through Inflight, not PackedInflight")).Log = value;
    }

    /// <summary>
    /// Packed rings after a restart (vhost-user inflight tracking): continue from the logged used offset and wrap counter
    /// and hand out <paramref name="chains"/> first, in this order; the avail position follows from their ring slots.
    /// </summary>
    internal void RestorePacked(int nextUsed, bool usedWrap, IReadOnlyList<RecordedChain> chains) =>
        (_packed ?? throw new VirtqueueException("RestorePacked needs a packed ring")).Restore(nextUsed, usedWrap, chains);

    /// <summary>
    /// Heads that were popped but never used before a restart; <see cref="Pop"/> returns them first, in this order,
    /// without consuming avail entries again (vhost-user inflight I/O tracking).
    /// </summary>
    internal void Resubmit(IEnumerable<ushort> heads)
    {
        _resubmit ??= new Queue<ushort>();
        foreach (var h in heads)
            if (h < _size) _resubmit.Enqueue(h);
    }

    /// <summary>Takes the next available chain, validated and copied (§2.7.13).</summary>
    public QueueStatus Pop(out DescriptorChain? chain)
    {
        if (_packed is { } p) return p.Pop(out chain);
        chain = null;
        if (IsBroken) return QueueStatus.Broken;
        if (_resubmit is { Count: > 0 }) return PopResubmitted(out chain);
        if (_availIdxShadow == _nextAvail)
        {
            var st = _mem.LoadU16Acquire(_layout.AvailIdxAddr, out ushort raw);
            if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? QueueStatus.Empty : FailMem(st, "reading avail idx", _layout.AvailIdxAddr);
            ushort idx = _layout.Endian.Fix(raw);
            // §2.7.13.3: the driver can never be more than a queue's worth ahead.
            if ((ushort)(idx - _nextAvail) > _size) return FailPop(QueueError.AvailIndexTooFarAhead, idx);
            _availIdxShadow = idx;
            if (idx == _nextAvail)
                return _notificationsEnabled && _options.EventIdx && RearmAvailEvent() ? Pop(out chain) : QueueStatus.Empty;
        }
        if (_inFlight >= _size) return FailPop(QueueError.TooManyInFlight, 0);

        // Ring entries are 2-byte aligned whenever avail idx (read above) was, so a typed load can read one.
        ulong slotAddr = _layout.AvailRingAddr(_nextAvail & _mask);
        var rs = _mem.LoadU16Acquire(slotAddr, out ushort rawHead);
        if (rs != MemStatus.Ok) return rs == MemStatus.Interrupted ? QueueStatus.Empty : FailMem(rs, "reading avail ring", slotAddr);
        ushort head = _layout.Endian.Fix(rawHead);
        if (head >= _size) return FailPop(QueueError.HeadOutOfRange, head);
        // A head made available again before it was used would be handed out twice (and an inflight log, keyed by
        // head, would lose one of the two): the driver broke §2.7.13 ("the device has used it" comes first).
        if ((_headsInFlight[head >> 6] & (1UL << head)) != 0) return FailPop(QueueError.BufferIdInUse, head);

        var result = TakeChain(head, out chain);
        if (result != QueueStatus.Ok) return result;
        _nextAvail++;
        Inflight?.Popped(head);
        return QueueStatus.Ok;
    }

    /// <summary>
    /// §2.7.10: with EVENT_IDX a driver notifies only when avail idx passes avail_event. A device that pops until empty
    /// without calling <see cref="EnableNotifications"/> must still say where it stopped, or the driver never kicks
    /// again. Returns true if chains arrived meanwhile (the caller pops again instead of sleeping).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool RearmAvailEvent()
    {
        if (_availEventWritten == _nextAvail) return false;
        var st = _mem.StoreU16Release(_layout.AvailEventAddr, _layout.Endian.Fix(_nextAvail));
        if (st != MemStatus.Ok)
        {
            // Interrupted: the ring is being paused; the restarted queue writes avail_event again (it starts unwritten).
            if (st != MemStatus.Interrupted) FailMem(st, "writing avail_event", _layout.AvailEventAddr);
            return false;
        }
        _availEventWritten = _nextAvail;
        _mem.Barrier(BarrierOp.Full, _barriers);   // the store before re-reading avail idx, as in EnableNotifications
        return HasAvailable();
    }

    /// <summary>Walks the chain at <paramref name="head"/> into a pooled chain object and marks it in flight.</summary>
    private QueueStatus TakeChain(ushort head, out DescriptorChain? chain)
    {
        chain = null;
        var c = _pool[--_poolCount];
        c.Reset();
        var result = Walk(c, head);
        if (result != QueueStatus.Ok)
        {
            _poolCount++;
            return result;
        }
        c.Head = head;
        c.Seq = _popSeq++;
        c.InFlight = true;
        _inFlight++;
        _headsInFlight[head >> 6] |= 1UL << head;
        chain = c;
        return QueueStatus.Ok;
    }

    private QueueStatus PopResubmitted(out DescriptorChain? chain)
    {
        chain = null;
        if (_inFlight >= _size) return FailPop(QueueError.TooManyInFlight, 0);
        ushort head = _resubmit!.Peek();
        if ((_headsInFlight[head >> 6] & (1UL << head)) != 0) return FailPop(QueueError.BufferIdInUse, head);
        var result = TakeChain(head, out chain);
        if (result == QueueStatus.Ok) _resubmit.Dequeue();   // an interrupted walk leaves it for the next pop
        return result;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailPop(QueueError error, ushort value) => error switch
    {
        QueueError.AvailIndexTooFarAhead => Fail(error, $"avail idx {value} is {(ushort)(value - _nextAvail)} entries ahead of {_nextAvail}, more than the queue size {Size}"),
        QueueError.TooManyInFlight => Fail(error, $"more than {Size} chains in flight: the driver made a head available again before it was used"),
        QueueError.BufferIdInUse => Fail(error, $"avail ring entry {_nextAvail} names head {value}, which is still in flight (made available again before it was used)"),
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
        // A translation the ring's stop cut short: the chain stays available (next_avail does not move) for whoever
        // runs the ring next, which is also what GET_VRING_BASE reports.
        if (st == MemStatus.Interrupted) return QueueStatus.Empty;
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
        if (_mem.LogsWrites) MarkWritable(chain);
        if (_packed is { } p) return p.AddUsed(chain, written);
        if (_inOrder)
        {
            if (chain.Seq != _usedSeq) DeviceQueueErrors.ThrowOutOfOrder(chain);
            _usedSeq++;
        }
        Release(chain);
        if (IsBroken) return QueueStatus.Broken;
        // Older entries wait for the ring's restart: this one joins them, in order.
        if (_usedPublished != _nextUsed || _usedLeftToLog) return Interrupted(new UsedElement(chain.Head, written, 1));
        Inflight?.Using(chain.Head);
        var st = WriteUsedElem(_nextUsed, chain.Head, written, out ulong addr);
        if (st != MemStatus.Ok)
            return st == MemStatus.Interrupted ? Interrupted(new UsedElement(chain.Head, written, 1)) : FailMem(st, "writing used ring", addr);
        // The element must be visible before the index that publishes it (release store).
        _mem.Barrier(BarrierOp.Write, _barriers);
        st = _mem.StoreU16Release(_layout.UsedIdxAddr, _layout.Endian.Fix((ushort)(_nextUsed + 1)));
        if (st != MemStatus.Ok)
            return st == MemStatus.Interrupted ? Interrupted(new UsedElement(chain.Head, written, 1)) : FailMem(st, "writing used idx", _layout.UsedIdxAddr);
        _usedPublished = ++_nextUsed;
        Inflight?.Used(chain.Head, _nextUsed);
        return QueueStatus.Ok;
    }

    /// <summary>Writes the used element (id, len) at used index <paramref name="index"/>, not yet published (§2.7.8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private MemStatus WriteUsedElem(ushort index, uint id, uint len, out ulong addr)
    {
        VirtqUsedElem e;
        e.Id = _layout.Endian.Fix(id);
        e.Len = _layout.Endian.Fix(len);
        addr = _layout.UsedRingAddr(index & _mask);
        return _mem.Write(addr, MemoryMarshal.AsBytes(new ReadOnlySpan<VirtqUsedElem>(ref e)));
    }

    /// <summary>
    /// A use the ring's pause cut short (<see cref="MemStatus.Interrupted"/>: its translation was being fetched). The
    /// request completed, so its used entry must reach the driver exactly once. Without an inflight log it waits in
    /// order (<see cref="UnpublishedUsed"/>) for the restarted ring to publish it; with one, the chain simply stays in
    /// flight in the log (Used was not called), which hands it out again after the restart, and so does every later one
    /// of this run, so the log and the ring never disagree.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus Interrupted(UsedElement u)
    {
        if (Inflight is not null) { _usedLeftToLog = true; return QueueStatus.Ok; }
        return Defer(u);
    }

    private QueueStatus Defer(UsedElement u)
    {
        var pending = _unpublished ??= new UsedElement[_size];
        // Each waiting entry is a chain the driver has not seen used; more than a ring's worth means it reused buffers.
        if (_unpublishedCount == pending.Length)
            return Fail(QueueError.TooManyInFlight, $"more than {Size} used entries wait to be published: the driver made buffers available again before it saw them used");
        pending[_unpublishedCount++] = u;
        _nextUsed += u.Slots;
        return QueueStatus.Ok;
    }

    /// <summary>Writes the waiting used elements and publishes them with one used idx store (§2.7.8); Interrupted keeps them waiting.</summary>
    private void PublishUnpublished()
    {
        var pending = _unpublished!;
        ushort slot = _usedPublished;
        for (int i = 0; i < _unpublishedCount; i++)
        {
            var st = WriteUsedElem(slot, pending[i].Id, pending[i].Len, out ulong addr);
            if (st != MemStatus.Ok) { if (st != MemStatus.Interrupted) FailMem(st, "writing used ring", addr); return; }
            slot += pending[i].Slots;
        }
        _mem.Barrier(BarrierOp.Write, _barriers);
        var ist = _mem.StoreU16Release(_layout.UsedIdxAddr, _layout.Endian.Fix(_nextUsed));
        if (ist != MemStatus.Ok) { if (ist != MemStatus.Interrupted) FailMem(ist, "writing used idx", _layout.UsedIdxAddr); return; }
        _usedPublished = _nextUsed;
        _unpublishedCount = 0;
    }

    /// <summary>
    /// Live migration (vhost-user.rst "Migration"): every writable buffer of a chain being used is marked dirty before
    /// the used entry publishes it. Storage filled these through host addresses (MapForIo), past the address space's
    /// Write, and marking at completion rather than at mapping means a page the front-end copied and cleared meanwhile
    /// is marked again. The whole writable extent is marked, not just the used length: a failed read may still have
    /// written part of it. A buffer that no longer translates (the guest unmapped it first) has nothing to migrate.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void MarkWritable(DescriptorChain chain)
    {
        foreach (var s in chain.Writable) _mem.MarkWritten(s.Addr, s.Length);
    }

    /// <summary>
    /// IN_ORDER only: returns <paramref name="chains"/> (the oldest in flight, in pop order) with one used element naming
    /// the last (§2.7.9, §2.8.20). The driver takes every chain but the last as written in full, so the device must have
    /// filled their writable bytes; <paramref name="lastWritten"/> is the last chain's used length.
    /// </summary>
    public QueueStatus AddUsedBatch(ReadOnlySpan<DescriptorChain> chains, uint lastWritten)
    {
        if (!_options.InOrder) throw new VirtqueueException("AddUsedBatch needs IN_ORDER (§2.7.9, §2.8.20)");
        if (chains.IsEmpty) return QueueStatus.Ok;
        foreach (var c in chains)
            if (!c.InFlight) ThrowBadUsed(c, 0);
        if (lastWritten > chains[^1].WritableBytes) ThrowBadUsed(chains[^1], lastWritten);
        // The split inflight path below uses the chains one by one through AddUsed, which marks them itself.
        if (_mem.LogsWrites && (_packed is not null || Inflight is null))
            foreach (var c in chains) MarkWritable(c);
        if (_packed is { } p) return p.AddUsedBatch(chains, lastWritten);
        if (Inflight is not null)
        {
            // The split inflight log tracks one head per used element; using the batch one by one is equally valid
            // under IN_ORDER (every chain but the last was written in full). A failure breaks the queue, but every
            // chain is still released, as without a log: the ones after it stay marked in flight in the log only.
            var result = QueueStatus.Ok;
            for (int i = 0; i < chains.Length; i++)
            {
                var one = AddUsed(chains[i], i == chains.Length - 1 ? lastWritten : (uint)chains[i].WritableBytes);
                if (result == QueueStatus.Ok) result = one;
            }
            return result;
        }
        for (int i = 0; i < chains.Length; i++)
            if (chains[i].Seq != _usedSeq + (uint)i) DeviceQueueErrors.ThrowOutOfOrder(chains[i]);
        foreach (var c in chains) Release(c);
        _usedSeq += (uint)chains.Length;
        if (IsBroken) return QueueStatus.Broken;
        // The element sits at the batch's first slot; used idx skips the whole batch (§2.7.9).
        var batch = new UsedElement(chains[^1].Head, lastWritten, (ushort)chains.Length);
        if (_usedPublished != _nextUsed) return Interrupted(batch);
        var st = WriteUsedElem(_nextUsed, chains[^1].Head, lastWritten, out ulong addr);
        if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? Interrupted(batch) : FailMem(st, "writing used ring", addr);
        _mem.Barrier(BarrierOp.Write, _barriers);
        st = _mem.StoreU16Release(_layout.UsedIdxAddr, _layout.Endian.Fix((ushort)(_nextUsed + chains.Length)));
        if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? Interrupted(batch) : FailMem(st, "writing used idx", _layout.UsedIdxAddr);
        _usedPublished = _nextUsed += (ushort)chains.Length;
        return QueueStatus.Ok;
    }

    /// <summary>
    /// Returns several chains at once, chain <c>i</c> having <paramref name="written"/>[i] bytes written, and publishes
    /// them together (split: one used idx store; packed: the first descriptor's flags last), so the driver never sees the
    /// first without the rest: virtio-net's merged receive buffers (§5.1.6.4, num_buffers).
    /// </summary>
    public QueueStatus AddUsedMany(ReadOnlySpan<DescriptorChain> chains, ReadOnlySpan<uint> written)
    {
        if (chains.Length != written.Length) throw new ArgumentException($"{chains.Length} chains but {written.Length} lengths", nameof(written));
        if (chains.IsEmpty) return QueueStatus.Ok;
        if (chains.Length == 1) return AddUsed(chains[0], written[0]);
        // Each chain once and in flight (a chain named twice would enter the free pool twice).
        for (int i = 0; i < chains.Length; i++)
        {
            var c = chains[i];
            if (!c.InFlight || written[i] > c.WritableBytes)
            {
                for (int j = 0; j < i; j++) chains[j].InFlight = true;
                ThrowBadUsed(c, c.InFlight ? written[i] : 0);
            }
            c.InFlight = false;
        }
        foreach (var c in chains) c.InFlight = true;
        // The split inflight path below uses the chains one by one through AddUsed, which marks them itself.
        if (_mem.LogsWrites && (_packed is not null || Inflight is null))
            foreach (var c in chains) MarkWritable(c);
        if (_packed is { } p) return p.AddUsedMany(chains, written);
        if (Inflight is not null)
        {
            // The split inflight log records one head per used element.
            var result = QueueStatus.Ok;
            for (int i = 0; i < chains.Length; i++)
            {
                var one = AddUsed(chains[i], written[i]);
                if (result == QueueStatus.Ok) result = one;
            }
            return result;
        }
        if (_inOrder)
        {
            for (int i = 0; i < chains.Length; i++)
                if (chains[i].Seq != _usedSeq + (uint)i) DeviceQueueErrors.ThrowOutOfOrder(chains[i]);
            _usedSeq += (uint)chains.Length;
        }
        foreach (var c in chains) Release(c);
        if (IsBroken) return QueueStatus.Broken;
        if (_usedPublished != _nextUsed) return DeferMany(chains, written);
        for (int i = 0; i < chains.Length; i++)
        {
            var st = WriteUsedElem((ushort)(_nextUsed + i), chains[i].Head, written[i], out ulong addr);
            if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? DeferMany(chains, written) : FailMem(st, "writing used ring", addr);
        }
        _mem.Barrier(BarrierOp.Write, _barriers);
        var ist = _mem.StoreU16Release(_layout.UsedIdxAddr, _layout.Endian.Fix((ushort)(_nextUsed + chains.Length)));
        if (ist != MemStatus.Ok) return ist == MemStatus.Interrupted ? DeferMany(chains, written) : FailMem(ist, "writing used idx", _layout.UsedIdxAddr);
        _usedPublished = _nextUsed += (ushort)chains.Length;
        return QueueStatus.Ok;
    }

    // Interrupted part way (written elements are not published until used idx moves): all of them wait, still to be
    // published together.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus DeferMany(ReadOnlySpan<DescriptorChain> chains, ReadOnlySpan<uint> written)
    {
        var result = QueueStatus.Ok;
        for (int i = 0; i < chains.Length && result == QueueStatus.Ok; i++) result = Defer(new UsedElement(chains[i].Head, written[i], 1));
        return result;
    }

    /// <summary>
    /// NOTIFICATION_DATA (§2.9): the driver's notification said its next avail idx (split) or next offset and wrap
    /// (packed) is <paramref name="offWrap"/>. A hint only, never trusted: returns false if it cannot be right.
    /// </summary>
    public bool AcceptNotificationData(ushort offWrap)
    {
        if (_packed is { } p) return p.AcceptNotificationData(offWrap);
        return (ushort)(offWrap - _nextAvail) <= _size;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadUsed(DescriptorChain chain, uint written) =>
        throw (!chain.InFlight
            ? new VirtqueueException($"{chain} is not in flight on this queue (used twice?)")
            : new VirtqueueException($"used length {written} exceeds the {chain.WritableBytes} writable bytes of {chain}"));

    /// <summary>Should the device interrupt the driver for what it used since the last call? (§2.7.10)</summary>
    public bool NeedsInterrupt()
    {
        bool pending = _packed is { } p ? p.HasUnsignalledUsed : _signalledUsed != _usedPublished;
        bool need = NeedsInterruptCore();
        // Used entries published, and the driver's used_event / NO_INTERRUPT / packed event suppression said no.
        if (pending && !need && !IsBroken) Volatile.Write(ref _suppressedInterrupts, _suppressedInterrupts + 1);
        return need;
    }

    /// <summary>
    /// Interrupts the driver's suppression state avoided so far (virtio 1.2 §2.7.7 split, with or without EVENT_IDX; §2.8.10
    /// packed): calls of <see cref="NeedsInterrupt"/> that had used entries to report and returned false. Any thread.
    /// </summary>
    public long SuppressedInterrupts => Volatile.Read(ref _suppressedInterrupts);

    private bool NeedsInterruptCore()
    {
        if (_packed is { } p) return p.NeedsInterrupt();
        if (IsBroken) return false;
        // The used idx store must be ordered before reading the driver's suppression state.
        _mem.Barrier(BarrierOp.Full, _barriers);
        // Only what the driver can see: entries waiting for the ring's restart are signalled once published.
        ushort old = _signalledUsed;
        _signalledUsed = _usedPublished;
        if (old == _usedPublished) return false;
        if (!_signalledUsedValid) { _signalledUsedValid = true; return true; }
        if (_options.EventIdx)
        {
            if (_mem.LoadU16Acquire(_layout.UsedEventAddr, out ushort ev) != MemStatus.Ok) return true;
            return EventIdx.NeedEvent(_layout.Endian.Fix(ev), _usedPublished, old);
        }
        if (_mem.LoadU16Acquire(_layout.AvailFlagsAddr, out ushort flags) != MemStatus.Ok) return true;
        return (_layout.Endian.Fix(flags) & RingFlags.AvailNoInterrupt) == 0;
    }

    /// <summary>Asks the driver not to notify (VIRTQ_USED_F_NO_NOTIFY, or avail_event far behind with EVENT_IDX).</summary>
    public void DisableNotifications()
    {
        if (_packed is { } p) { p.DisableNotifications(); return; }
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
        if (_packed is { } p) return p.EnableNotifications();
        if (IsBroken) return false;
        _notificationsEnabled = true;
        if (_options.EventIdx)
        {
            _mem.StoreU16Release(_layout.AvailEventAddr, _layout.Endian.Fix(_availIdxShadow));
            _availEventWritten = _availIdxShadow;
        }
        else _mem.StoreU16Release(_layout.UsedFlagsAddr, 0);
        _mem.Barrier(BarrierOp.Full, _barriers);
        return HasAvailable();
    }

    /// <summary>Split: a chain leaves flight (it is being used): its head may be made available again.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Release(DescriptorChain c)
    {
        c.InFlight = false;
        _inFlight--;
        _headsInFlight[c.Head >> 6] &= ~(1UL << c.Head);
        _pool[_poolCount++] = c;
    }

    /// <summary>Forgets every chain in flight (device reset): their buffers are never used.</summary>
    public void Reset()
    {
        if (_packed is { } p) { p.Reset(); return; }
        for (int i = 0; i < _all.Length; i++) { _all[i].InFlight = false; _pool[i] = _all[i]; }
        _poolCount = _pool.Length;
        _inFlight = 0;
        Array.Clear(_headsInFlight);
        _nextAvail = _availIdxShadow = _nextUsed = _usedPublished = _signalledUsed = 0;
        _unpublishedCount = 0;
        _usedLeftToLog = false;
        _signalledUsedValid = true;
        _availEventWritten = -1;
        _resubmit?.Clear();
        _popSeq = _usedSeq = 0;
        _error = QueueError.None;
        _errorDetail = null;
        _notificationsEnabled = true;
    }
}
