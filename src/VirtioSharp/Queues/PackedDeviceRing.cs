// Over 400 lines on purpose: the packed device ring (§2.8) is one hot-path type, kept whole for inlining like
// DeviceQueue; its parts (pop with id bitmap, used batches, event suppression, restore) share private state.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Queues;

/// <summary>
/// Device side of a packed virtqueue (virtio 1.2 §2.8), behind <see cref="DeviceQueue{TMem}"/>. Every access goes through
/// <typeparamref name="TMem"/>; each descriptor is read once into a private copy; positions, ids and chain lengths are
/// bounded, and a rule violation breaks the queue.
/// </summary>
internal sealed class PackedDeviceRing<TMem> where TMem : struct, IDeviceMemory
{
    private readonly TMem _mem;
    private readonly SplitRingLayout _layout;     // Desc = descriptor ring, Avail = driver area, Used = device area
    private readonly ushort _size;
    private readonly int _maxChain;
    private readonly bool _eventIdx;
    private readonly bool _inOrder;
    private readonly Dma.BarrierKind _barriers;
    private readonly DescriptorChain[] _all;
    private readonly DescriptorChain[] _pool;
    private readonly ulong[] _idBusy = new ulong[65536 / 64];   // ids are 16-bit; a bitmap catches reuse
    private int _poolCount;
    private int _inFlight;
    private int _descInFlight;                    // ring slots popped but not yet covered by used descriptors
    private int _nextAvail;
    private bool _availWrap;
    private int _nextUsed;
    private bool _usedWrap;
    private int _signalledPos;
    private bool _signalledWrap;
    private int _usedSinceSignal;                 // ring slots covered by used descriptors since the last NeedsInterrupt
    private uint _popSeq, _usedSeq;
    private bool _notificationsEnabled = true;
    private Queue<RecordedChain>? _resubmit;
    // Used descriptors produced while a pause cut a translation short (MemStatus.Interrupted), oldest first, to be
    // written from _nextUsed on (which stays the published position) before anything newer. Rare: allocated on need.
    private UsedElement[]? _unpublished;
    private int _unpublishedCount;
    private bool _usedLeftToLog;                  // with an inflight log: interrupted uses stay in flight there instead

    public PackedDeviceRing(TMem memory, SplitRingLayout layout, QueueOptions options)
    {
        if (!PackedRing.IsValidSize(layout.QueueSize))
            throw new ArgumentOutOfRangeException(nameof(layout), $"packed queue size {layout.QueueSize} must be between 1 and 32768 (virtio 1.2 §2.8.10.1)");
        if (layout.Endian.BigEndian)
            throw new ArgumentException("packed rings exist only on modern (little-endian) devices", nameof(layout));
        _mem = memory;
        _layout = layout;
        _size = layout.QueueSize;
        _maxChain = options.MaxChainLength;
        _eventIdx = options.EventIdx;
        _inOrder = options.InOrder;
        _barriers = options.Barriers;
        _all = new DescriptorChain[_size];
        for (int i = 0; i < _all.Length; i++) _all[i] = new DescriptorChain(8);
        _pool = (DescriptorChain[])_all.Clone();
        Reset();
    }

    public int InFlight => _inFlight;
    public QueueError Error { get; private set; }
    public string? ErrorDetail { get; private set; }
    public bool IsBroken => Error != QueueError.None;
    public ushort NextAvail => (ushort)_nextAvail;
    public ushort NextUsed => (ushort)_nextUsed;
    public bool AvailWrap => _availWrap;
    public bool UsedWrap => _usedWrap;
    public UsedElement[]? UnpublishedUsed => _unpublishedCount == 0 ? null : _unpublished.AsSpan(0, _unpublishedCount).ToArray();
    /// <summary>Records chains in flight where they survive the device process (vhost-user inflight region).</summary>
    public IPackedInflightLog? Log { get; set; }

    /// <summary>vhost-user GET_VRING_BASE for packed rings (QEMU 7.2 encoding): avail offset | avail wrap &lt;&lt; 15 | used offset &lt;&lt; 16 | used wrap &lt;&lt; 31.</summary>
    public uint Base => (uint)_nextAvail | (_availWrap ? 1u << 15 : 0) | (uint)_nextUsed << 16 | (_usedWrap ? 1u << 31 : 0);

    public void SetBase(uint value)
    {
        int avail = (int)(value & 0x7FFF), used = (int)((value >> 16) & 0x7FFF);
        if (avail >= _size || used >= _size)
            throw new ArgumentOutOfRangeException(nameof(value), $"packed ring base 0x{value:x8} names offsets past the {_size}-entry ring");
        _nextAvail = avail;
        _availWrap = (value & (1u << 15)) != 0;
        _nextUsed = _signalledPos = used;
        _usedWrap = _signalledWrap = (value & (1u << 31)) != 0;
        _usedSinceSignal = 0;
        _unpublishedCount = 0;
        _usedLeftToLog = false;
    }

    /// <summary>Restore: used descriptors a previous owner could not publish, published first (in order, together).</summary>
    public void Publish(IReadOnlyList<UsedElement> pending)
    {
        int slots = 0;
        foreach (var u in pending)
        {
            if (u.Slots == 0 || (slots += u.Slots) > _size)
                throw new ArgumentException($"unpublished used descriptor {u} does not fit the {_size}-entry ring", nameof(pending));
            if (Defer(u) != QueueStatus.Ok) return;
        }
        PublishUnpublished();
    }

    /// <summary>
    /// A use the ring's pause cut short (see DeviceQueue.Interrupted): without an inflight log it waits in order for
    /// the restarted ring; with one, the chain and every later one of this run stay in flight in the log (no
    /// Committed), and the log's recovery hands them out again.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus Interrupted(UsedElement u)
    {
        if (Log is not null) { _usedLeftToLog = true; return QueueStatus.Ok; }
        return Defer(u);
    }

    private QueueStatus Defer(UsedElement u)
    {
        var pending = _unpublished ??= new UsedElement[_size];
        if (_unpublishedCount == pending.Length)
            return Fail(QueueError.TooManyInFlight, $"more than {_size} used descriptors wait to be published: the driver made buffers available again before it saw them used");
        pending[_unpublishedCount++] = u;
        return QueueStatus.Ok;
    }

    /// <summary>
    /// Writes the waiting used descriptors from the published position on, the first one's flags last (§2.8.21), so the
    /// driver sees all of them or none; Interrupted keeps them waiting.
    /// </summary>
    private void PublishUnpublished()
    {
        var pending = _unpublished!;
        int pos = _nextUsed, slotsTotal = 0;
        bool wrap = _usedWrap;
        for (int i = 0; i < _unpublishedCount; i++)
        {
            ulong addr = DescAddr(pos);
            var st = WriteLenId(addr, pending[i].Len, pending[i].Id);
            if (st == MemStatus.Ok && i > 0)
            {
                _mem.Barrier(BarrierOp.Write, _barriers);
                st = _mem.StoreU16Release(addr + PackedDesc.FlagsOffset, PackedRing.Le(PackedRing.UsedBits(wrap)));
            }
            if (st != MemStatus.Ok) { if (st != MemStatus.Interrupted) FailMem(st, "writing used descriptor", addr); return; }
            slotsTotal += pending[i].Slots;
            pos += pending[i].Slots;
            if (pos >= _size) { pos -= _size; wrap = !wrap; }
        }
        ulong firstAddr = DescAddr(_nextUsed);
        _mem.Barrier(BarrierOp.Write, _barriers);
        var fs = _mem.StoreU16Release(firstAddr + PackedDesc.FlagsOffset, PackedRing.Le(PackedRing.UsedBits(_usedWrap)));
        if (fs != MemStatus.Ok) { if (fs != MemStatus.Interrupted) FailMem(fs, "writing used descriptor flags", firstAddr); return; }
        _nextUsed = pos;
        _usedWrap = wrap;
        _usedSinceSignal += slotsTotal;
        _unpublishedCount = 0;
    }

    public MemStatus CheckRings()
    {
        // The device writes used descriptors into the ring and its own event area; it only reads the driver's.
        var st = _mem.Check(_layout.Desc, PackedRing.DescBytes(_size), Access.ReadWrite);
        if (st == MemStatus.Ok) st = _mem.Check(_layout.DriverArea, PackedRing.EventBytes, Access.Read);
        if (st == MemStatus.Ok) st = _mem.Check(_layout.DeviceArea, PackedRing.EventBytes, Access.ReadWrite);
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

    private ulong DescAddr(int slot) => _layout.Desc + (ulong)slot * PackedDesc.Size;

    public bool HasAvailable()
    {
        if (IsBroken) return false;
        if (_mem.LoadU16Acquire(DescAddr(_nextAvail) + PackedDesc.FlagsOffset, out ushort raw) != MemStatus.Ok) return false;
        return PackedRing.IsAvail(PackedRing.Le(raw), _availWrap);
    }

    /// <summary>Takes the next available chain, validated and copied (§2.8.6, §2.8.19).</summary>
    // Inlined into the DeviceQueue/DriverQueue facade: no extra call per chain for the packed layout.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public QueueStatus Pop(out DescriptorChain? chain)
    {
        chain = null;
        if (IsBroken) return QueueStatus.Broken;
        if (_resubmit is { Count: > 0 }) return PopRecorded(out chain);
        if (_poolCount == 0) return PoolExhausted();
        var c = _pool[--_poolCount];
        c.Reset();
        // Walk reads the head's flags first (Empty if not available) and fails the queue on a rule violation.
        var result = Walk(c, out int pos, out bool wrap, out ushort id, out int descs);
        if (result != QueueStatus.Ok)
        {
            _poolCount++;
            return result;
        }
        if (!TakeId(id))
        {
            _poolCount++;
            return FailPop(QueueError.BufferIdInUse, id, 0);
        }
        c.Head = id;
        c.RingDescriptors = (ushort)descs;
        c.Seq = _popSeq++;
        c.InFlight = true;
        _inFlight++;
        _descInFlight += descs;
        _nextAvail = pos;
        _availWrap = wrap;
        if (Log is { } log) c.LogEntry = log.Popped(c);
        chain = c;
        return QueueStatus.Ok;
    }

    /// <summary>
    /// After a restart: the device continues from the log's used position; the avail position follows, because the
    /// ring slots between them are exactly those of the chains still in flight (each used descriptor skips its
    /// chain's slots, §2.8.7). The recorded chains are validated again when <see cref="Pop"/> returns them.
    /// </summary>
    public void Restore(int nextUsed, bool usedWrap, IReadOnlyList<RecordedChain> chains)
    {
        if ((uint)nextUsed >= _size) throw new ArgumentOutOfRangeException(nameof(nextUsed), $"used offset {nextUsed} is past the {_size}-entry ring");
        int slots = 0;
        foreach (var r in chains)
        {
            if (r.Descriptors.Length == 0) throw new ArgumentException($"recorded chain at entry {r.Entry} has no descriptors", nameof(chains));
            slots += r.Descriptors.Length;
        }
        if (slots > _size) throw new ArgumentException($"recorded chains occupy {slots} ring slots, more than the {_size}-entry ring", nameof(chains));
        Reset();
        _nextUsed = _signalledPos = nextUsed;
        _usedWrap = _signalledWrap = usedWrap;
        _nextAvail = nextUsed + slots;
        _availWrap = usedWrap;
        if (_nextAvail >= _size) { _nextAvail -= _size; _availWrap = !_availWrap; }
        _descInFlight = slots;   // counted now: their slots are taken even before Pop hands them out again
        _resubmit = new Queue<RecordedChain>(chains);
    }

    private QueueStatus PopRecorded(out DescriptorChain? chain)
    {
        chain = null;
        var r = _resubmit!.Peek();   // dequeued once taken: an interrupted walk leaves it for the next pop
        var c = _pool[--_poolCount];
        c.Reset();
        bool sawWritable = false;
        ulong total = 0;
        ushort id = 0;
        var descs = r.Descriptors;
        if (descs.Length > _maxChain)
        {
            _poolCount++;
            return Fail(QueueError.ChainTooLong, $"recorded chain at inflight entry {r.Entry} has {descs.Length} descriptors, more than the {_maxChain}-descriptor limit");
        }
        for (int i = 0; i < descs.Length; i++)
        {
            var desc = descs[i];
            bool last = i == descs.Length - 1;
            QueueStatus st;
            if ((desc.Flags & (ushort)DescFlags.Indirect) != 0)
                st = TakeIndirect(c, desc, descs.Length == 1, _nextAvail, MemStatus.Ok, 0, ref sawWritable, ref total);
            else if (((desc.Flags & (ushort)DescFlags.Next) != 0) == last)
                st = Fail(QueueError.ChainDescriptorNotAvailable, $"recorded chain at inflight entry {r.Entry}: NEXT flags do not match its {descs.Length} descriptors");
            else
                st = AddSegment(c, desc, ref sawWritable, ref total, _nextAvail, MemStatus.Ok, 0);
            if (st != QueueStatus.Ok) { _poolCount++; return st; }
            if (last) id = desc.Id;
        }
        if (!TakeId(id)) { _poolCount++; return FailPop(QueueError.BufferIdInUse, id, 0); }
        c.Head = id;
        c.RingDescriptors = (ushort)descs.Length;
        c.Seq = _popSeq++;
        c.InFlight = true;
        c.LogEntry = r.Entry;   // already recorded: the log keeps its entry
        _inFlight++;
        _resubmit.Dequeue();
        chain = c;
        return QueueStatus.Ok;
    }

    private bool TakeId(ushort id)
    {
        ref ulong word = ref _idBusy[id >> 6];
        ulong bit = 1UL << (id & 63);
        if ((word & bit) != 0) return false;
        word |= bit;
        return true;
    }

    // Every slot is in flight, so no chain object is left: at most Queue Size buffers are outstanding (§2.8.10.1).
    // That is only an error if the driver made another descriptor available.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus PoolExhausted()
    {
        ulong flagsAddr = DescAddr(_nextAvail) + PackedDesc.FlagsOffset;
        var st = _mem.LoadU16Acquire(flagsAddr, out ushort raw);
        if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? QueueStatus.Empty : FailMem(st, "reading descriptor flags", flagsAddr);
        ushort flags = PackedRing.Le(raw);
        return PackedRing.IsAvail(flags, _availWrap) ? FailPop(QueueError.TooManyInFlight, _nextAvail, flags) : QueueStatus.Empty;
    }

    /// <summary>
    /// Walks the chain at the next avail slot into <paramref name="c"/>: Empty if its head is not available, Broken on a
    /// rule violation (§2.8.6, §2.8.19). Each descriptor is read once into a private copy.
    /// </summary>
    private QueueStatus Walk(DescriptorChain c, out int pos, out bool wrap, out ushort id, out int descs)
    {
        pos = _nextAvail;
        wrap = _availWrap;
        id = 0;
        descs = 0;
        int budget = _size - _descInFlight;   // slots this chain may take: the rest still belong to chains in flight
        bool sawWritable = false;
        ulong total = 0;
        PackedDesc d = default;
        var dBytes = MemoryMarshal.AsBytes(new Span<PackedDesc>(ref d));
        while (true)
        {
            ulong addr = DescAddr(pos);
            MemStatus st;
            if (descs == 0)
            {
                // The head: flags with acquire, then the whole descriptor, through one translation (§2.8.21).
                st = _mem.LoadU16AcquireThenRead(addr, PackedDesc.FlagsOffset, out ushort raw, dBytes);
                if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? QueueStatus.Empty : FailMem(st, "reading descriptor", addr);
                ushort headFlags = PackedRing.Le(raw);
                if (!PackedRing.IsAvail(headFlags, wrap))
                {
                    // AVAIL = USED = our wrap is "used in this lap": only the device writes that, never ahead of itself.
                    if (PackedRing.IsUsed(headFlags, wrap)) return FailPop(QueueError.DescriptorFlagsInconsistent, _nextAvail, headFlags);
                    return QueueStatus.Empty;
                }
            }
            else st = _mem.Read(addr, dBytes);   // one read: a private copy
            if (st != MemStatus.Ok) return WalkFail(QueueError.RingAccessFault, pos, default, st, addr);
            var desc = BitConverter.IsLittleEndian ? d : Fix(d);
            if (!PackedRing.IsAvail(desc.Flags, wrap))
                return WalkFail(descs == 0 ? QueueError.DescriptorFlagsInconsistent : QueueError.ChainDescriptorNotAvailable, pos, desc, st, addr);
            if (++descs > budget) return WalkFail(descs > _size ? QueueError.ChainTooLong : QueueError.TooManyInFlight, pos, desc, st, addr);
            var flags = (DescFlags)desc.Flags;
            pos++;
            if (pos == _size) { pos = 0; wrap = !wrap; }

            if ((flags & DescFlags.Indirect) != 0)
            {
                id = desc.Id;
                return TakeIndirect(c, desc, descs == 1, pos, st, addr, ref sawWritable, ref total);
            }
            if (c.Count + 1 > _maxChain) return WalkFail(QueueError.ChainTooLong, pos, desc, st, addr);
            var rs = AddSegment(c, desc, ref sawWritable, ref total, pos, st, addr);
            if (rs != QueueStatus.Ok) return rs;
            if ((flags & DescFlags.Next) == 0)
            {
                id = desc.Id;   // §2.8.6: the buffer id is in the last descriptor of the chain
                return QueueStatus.Ok;
            }
        }
    }

    /// <summary>An indirect descriptor, which must be its chain's only one: validates it and copies its table (§2.8.19).</summary>
    private QueueStatus TakeIndirect(DescriptorChain c, PackedDesc desc, bool only, int pos, MemStatus st, ulong addr, ref bool sawWritable, ref ulong total)
    {
        QueueError bad =
            (desc.Flags & (ushort)DescFlags.Next) != 0 ? QueueError.IndirectWithNext :
            !only ? QueueError.IndirectNotAtHead :
            desc.Len == 0 || desc.Len % PackedDesc.Size != 0 ? QueueError.IndirectBadLength :
            desc.Len / PackedDesc.Size > (uint)_maxChain ? QueueError.ChainTooLong :
            QueueError.None;
        if (bad != QueueError.None) return WalkFail(bad, pos, desc, st, addr);
        st = _mem.Check(desc.Addr, desc.Len, Access.Read);
        if (st != MemStatus.Ok) return WalkFail(QueueError.AddressRefused, pos, desc, st, addr, table: true);
        c.IndirectTable = desc.Addr;
        c.IndirectTableLength = desc.Len;
        int n = (int)(desc.Len / PackedDesc.Size);
        PackedDesc d = default;
        var dBytes = MemoryMarshal.AsBytes(new Span<PackedDesc>(ref d));
        // §2.8.19: entries follow one another; only WRITE counts, other flags and ids are reserved.
        for (int i = 0; i < n; i++)
        {
            ulong ea = desc.Addr + (ulong)i * PackedDesc.Size;
            st = _mem.Read(ea, dBytes);
            if (st != MemStatus.Ok) return WalkFail(QueueError.RingAccessFault, pos, default, st, ea, table: true);
            var e = BitConverter.IsLittleEndian ? d : Fix(d);
            var r = AddSegment(c, e, ref sawWritable, ref total, pos, st, ea);
            if (r != QueueStatus.Ok) return r;
        }
        return QueueStatus.Ok;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private QueueStatus AddSegment(DescriptorChain c, PackedDesc desc, ref bool sawWritable, ref ulong total, int pos, MemStatus st, ulong addr)
    {
        bool writable = (desc.Flags & (ushort)DescFlags.Write) != 0;
        if (writable) sawWritable = true;
        else if (sawWritable) return WalkFail(QueueError.ReadableAfterWritable, pos, desc, st, addr);
        total += desc.Len;
        if (total > uint.MaxValue) return WalkFail(QueueError.ChainTooManyBytes, pos, desc, st, addr);
        if (desc.Len != 0)
        {
            st = _mem.Check(desc.Addr, desc.Len, writable ? Access.Write : Access.Read);
            if (st != MemStatus.Ok) return WalkFail(QueueError.AddressRefused, pos, desc, st, addr);
        }
        c.Add(desc.Addr, desc.Len, writable);
        return QueueStatus.Ok;
    }

    private PackedDesc Fix(PackedDesc d) =>
        new PackedDesc(PackedRing.Le(d.Addr), PackedRing.Le(d.Len), PackedRing.Le(d.Id), PackedRing.Le(d.Flags));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailPop(QueueError error, int value, ushort flags) => error switch
    {
        QueueError.DescriptorFlagsInconsistent => Fail(error, $"descriptor {value} has flags 0x{flags:x4}: AVAIL and USED both equal the device's wrap counter {(_availWrap ? 1 : 0)}, which a driver never writes (§2.8.1)"),
        QueueError.TooManyInFlight => Fail(error, $"more than {_size} chains in flight"),
        QueueError.BufferIdInUse => Fail(error, $"buffer id {value} made available again while still in flight (§2.8.5)"),
        _ => Fail(error, $"{error} at {value}"),
    };

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus WalkFail(QueueError error, int pos, PackedDesc desc, MemStatus st, ulong addr, bool table = false)
    {
        // A translation the ring's stop cut short: nothing was taken, the chain stays available (see DeviceQueue).
        if (st == MemStatus.Interrupted) return QueueStatus.Empty;
        int head = _nextAvail;
        bool writable = (desc.Flags & (ushort)DescFlags.Write) != 0;
        return error switch
        {
            QueueError.RingAccessFault => FailMem(st, table ? "reading indirect descriptor" : "reading descriptor", addr),
            QueueError.DescriptorFlagsInconsistent => Fail(error, $"head descriptor {head} changed its flags to 0x{desc.Flags:x4} between two reads (§2.8.21)"),
            QueueError.ChainDescriptorNotAvailable => Fail(error, $"chain at {head} continues into descriptor at 0x{addr:x} with flags 0x{desc.Flags:x4}, not available under its slot's wrap counter (§2.8.6)"),
            QueueError.TooManyInFlight => Fail(error, $"chain at {head} runs into the {_descInFlight} ring slots still in flight"),
            QueueError.ChainTooLong when (desc.Flags & (ushort)DescFlags.Indirect) != 0 =>
                Fail(error, $"indirect table of {desc.Len / PackedDesc.Size} entries exceeds the {_maxChain}-descriptor limit"),
            QueueError.ChainTooLong => Fail(error, $"chain at {head} is longer than the ring ({_size}) or the {_maxChain}-descriptor limit"),
            QueueError.IndirectWithNext => Fail(error, $"descriptor at 0x{addr:x} has both INDIRECT and NEXT (§2.8.19)"),
            QueueError.IndirectNotAtHead => Fail(error, $"indirect descriptor at 0x{addr:x} is not the only descriptor of its chain"),
            QueueError.IndirectBadLength => Fail(error, $"indirect table length {desc.Len} is not a non-zero multiple of 16"),
            QueueError.AddressRefused when table => Fail(error, $"indirect table 0x{desc.Addr:x}+{desc.Len}: {st.Describe()}"),
            QueueError.AddressRefused => Fail(error, $"buffer 0x{desc.Addr:x}+{desc.Len} ({(writable ? "write" : "read")}) of chain at {head}: {st.Describe()}"),
            QueueError.ReadableAfterWritable => Fail(error, $"descriptor at 0x{addr:x} of chain at {head} is device-readable after a device-writable one"),
            QueueError.ChainTooManyBytes => Fail(error, $"chain at {head} describes more than 4 GiB"),
            _ => Fail(error, $"descriptor at 0x{addr:x} of chain at {head}: {error}"),
        };
    }

    private void Release(DescriptorChain chain)
    {
        chain.InFlight = false;
        _inFlight--;
        _descInFlight -= chain.RingDescriptors;
        _idBusy[chain.Head >> 6] &= ~(1UL << (chain.Head & 63));
        _pool[_poolCount++] = chain;
        _usedSeq++;
    }

    /// <summary>
    /// A used descriptor's len then id, as one 6-byte write (the little-endian byte order of this ulong is the ring's
    /// field order); its flags are the caller's, stored last (§2.8.21).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private MemStatus WriteLenId(ulong descAddr, uint len, ushort id)
    {
        ulong body = BitConverter.IsLittleEndian ? len | (ulong)id << 32 : BinaryPrimitivesPack(PackedRing.Le(len), PackedRing.Le(id));
        return _mem.Write(descAddr + PackedDesc.LenOffset, MemoryMarshal.AsBytes(new ReadOnlySpan<ulong>(ref body))[..6]);
    }

    /// <summary>Writes one used descriptor at the next used slot and skips the slots of the chains it covers (§2.8.7).</summary>
    private QueueStatus WriteUsed(ushort id, uint written, int slots)
    {
        // Older entries wait for the ring's restart: this one joins them, in order.
        if (_unpublishedCount != 0 || _usedLeftToLog) return Interrupted(new UsedElement(id, written, (ushort)slots));
        ulong addr = DescAddr(_nextUsed);
        var st = WriteLenId(addr, written, id);
        if (st != MemStatus.Ok)
            return st == MemStatus.Interrupted ? Interrupted(new UsedElement(id, written, (ushort)slots)) : FailMem(st, "writing used descriptor", addr);
        bool wrap = _usedWrap, nextWrap = wrap;
        int next = _nextUsed + slots;
        if (next >= _size) { next -= _size; nextWrap = !wrap; }
        var log = Log;
        log?.Publishing(next, nextWrap);
        // §2.8.21: flags last, with release, so the driver sees id and len once it sees the descriptor used.
        _mem.Barrier(BarrierOp.Write, _barriers);
        st = _mem.StoreU16Release(addr + PackedDesc.FlagsOffset, PackedRing.Le(PackedRing.UsedBits(wrap)));
        // Interrupted after Publishing: the log's recovery finds the flags unchanged and rolls the batch back.
        if (st != MemStatus.Ok)
            return st == MemStatus.Interrupted ? Interrupted(new UsedElement(id, written, (ushort)slots)) : FailMem(st, "writing used descriptor flags", addr);
        _nextUsed = next;
        _usedWrap = nextWrap;
        _usedSinceSignal += slots;
        log?.Committed();
        return QueueStatus.Ok;
    }

    private static ulong BinaryPrimitivesPack(uint len, ushort id)
    {
        ulong v = 0;
        var b = MemoryMarshal.AsBytes(new Span<ulong>(ref v));
        MemoryMarshal.Write(b, len);
        MemoryMarshal.Write(b[4..], id);
        return v;
    }

    // Inlined into the DeviceQueue/DriverQueue facade: no extra call per chain for the packed layout.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public QueueStatus AddUsed(DescriptorChain chain, uint written)
    {
        if (_inOrder && chain.Seq != _usedSeq) DeviceQueueErrors.ThrowOutOfOrder(chain);
        ushort id = chain.Head;
        int slots = chain.RingDescriptors;
        Release(chain);
        if (IsBroken) return QueueStatus.Broken;
        Log?.Using(chain.LogEntry);
        return WriteUsed(id, written, slots);
    }

    public QueueStatus AddUsedBatch(ReadOnlySpan<DescriptorChain> chains, uint lastWritten)
    {
        int slots = 0;
        for (int i = 0; i < chains.Length; i++)
        {
            if (chains[i].Seq != _usedSeq + (uint)i) DeviceQueueErrors.ThrowOutOfOrder(chains[i]);
            slots += chains[i].RingDescriptors;
        }
        ushort id = chains[^1].Head;
        foreach (var c in chains) Release(c);
        if (IsBroken) return QueueStatus.Broken;
        if (Log is { } log)
            foreach (var c in chains) log.Using(c.LogEntry);
        return WriteUsed(id, lastWritten, slots);
    }

    /// <summary>
    /// Several chains used at once, made visible together: every used descriptor is written, then the first one's flags
    /// last, so a driver that finds the first used finds the rest too (virtio-net's merged receive buffers, §5.1.6.4).
    /// </summary>
    public QueueStatus AddUsedMany(ReadOnlySpan<DescriptorChain> chains, ReadOnlySpan<uint> written)
    {
        if (_inOrder)
            for (int i = 0; i < chains.Length; i++)
                if (chains[i].Seq != _usedSeq + (uint)i) DeviceQueueErrors.ThrowOutOfOrder(chains[i]);
        foreach (var c in chains) Release(c);
        if (IsBroken) return QueueStatus.Broken;
        if (Log is { } log)
        {
            // The inflight log brackets one used descriptor at a time.
            for (int i = 0; i < chains.Length; i++)
            {
                log.Using(chains[i].LogEntry);
                var one = WriteUsed(chains[i].Head, written[i], chains[i].RingDescriptors);
                if (one != QueueStatus.Ok) return one;
            }
            return QueueStatus.Ok;
        }
        if (_unpublishedCount != 0) return DeferMany(chains, written);
        int pos = _nextUsed, slotsTotal = 0;
        bool wrap = _usedWrap;
        ulong firstAddr = DescAddr(pos);
        bool firstWrap = wrap;
        for (int i = 0; i < chains.Length; i++)
        {
            ulong addr = DescAddr(pos);
            var st = WriteLenId(addr, written[i], chains[i].Head);
            if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? DeferMany(chains, written) : FailMem(st, "writing used descriptor", addr);
            if (i > 0)
            {
                _mem.Barrier(BarrierOp.Write, _barriers);
                st = _mem.StoreU16Release(addr + PackedDesc.FlagsOffset, PackedRing.Le(PackedRing.UsedBits(wrap)));
                if (st != MemStatus.Ok) return st == MemStatus.Interrupted ? DeferMany(chains, written) : FailMem(st, "writing used descriptor flags", addr);
            }
            int slots = chains[i].RingDescriptors;
            slotsTotal += slots;
            pos += slots;
            if (pos >= _size) { pos -= _size; wrap = !wrap; }
        }
        _mem.Barrier(BarrierOp.Write, _barriers);
        var fs = _mem.StoreU16Release(firstAddr + PackedDesc.FlagsOffset, PackedRing.Le(PackedRing.UsedBits(firstWrap)));
        if (fs != MemStatus.Ok) return fs == MemStatus.Interrupted ? DeferMany(chains, written) : FailMem(fs, "writing used descriptor flags", firstAddr);
        _nextUsed = pos;
        _usedWrap = wrap;
        _usedSinceSignal += slotsTotal;
        return QueueStatus.Ok;
    }

    // Interrupted part way (nothing is visible before the first descriptor's flags): all of them wait, still to be
    // published together.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus DeferMany(ReadOnlySpan<DescriptorChain> chains, ReadOnlySpan<uint> written)
    {
        var result = QueueStatus.Ok;
        for (int i = 0; i < chains.Length && result == QueueStatus.Ok; i++)
            result = Defer(new UsedElement(chains[i].Head, written[i], chains[i].RingDescriptors));
        return result;
    }

    /// <summary>Used descriptors were written since the last <see cref="NeedsInterrupt"/>.</summary>
    public bool HasUnsignalledUsed => _usedSinceSignal != 0;

    /// <summary>Reads the driver event suppression area (§2.8.14): interrupt for what was used since the last call?</summary>
    public bool NeedsInterrupt()
    {
        if (IsBroken) return false;
        _mem.Barrier(BarrierOp.Full, _barriers);   // used flags stores before reading the driver's suppression state
        int used = _usedSinceSignal;
        int oldPos = _signalledPos;
        bool oldWrap = _signalledWrap;
        _usedSinceSignal = 0;
        _signalledPos = _nextUsed;
        _signalledWrap = _usedWrap;
        if (used == 0) return false;
        Span<byte> ev = stackalloc byte[4];
        if (_mem.Read(_layout.DriverArea, ev) != MemStatus.Ok) return true;
        ushort offWrap = PackedRing.Le(MemoryMarshal.Read<ushort>(ev));
        ushort flags = PackedRing.Le(MemoryMarshal.Read<ushort>(ev[2..]));
        if (flags == PackedRing.EventDisable) return false;
        // ENABLE, reserved values, DESC without EVENT_IDX, an offset past the ring, or more than a lap since the last
        // signal: interrupt. Drivers handle spurious interrupts; a missed one hangs them.
        if (flags != PackedRing.EventDesc || !_eventIdx || (offWrap & 0x7FFF) >= _size || used >= _size) return true;
        int old = oldWrap == _usedWrap ? oldPos : oldPos - _size;
        return PackedRing.NeedEvent(offWrap, _usedWrap, _size, _nextUsed, old);
    }

    public void DisableNotifications()
    {
        if (!_notificationsEnabled || IsBroken) return;
        _notificationsEnabled = false;
        _mem.StoreU16Release(_layout.DeviceArea + 2, PackedRing.Le(PackedRing.EventDisable));
    }

    public bool EnableNotifications()
    {
        if (IsBroken) return false;
        _notificationsEnabled = true;
        // With EVENT_IDX: notify when the slot we will read next becomes available (offset before flags).
        if (_eventIdx) _mem.StoreU16Release(_layout.DeviceArea, PackedRing.Le(PackedRing.OffWrap(_nextAvail, _availWrap)));
        _mem.StoreU16Release(_layout.DeviceArea + 2, PackedRing.Le(_eventIdx ? PackedRing.EventDesc : PackedRing.EventEnable));
        _mem.Barrier(BarrierOp.Full, _barriers);
        return HasAvailable();
    }

    /// <summary>NOTIFICATION_DATA (§2.9): a hint of where the driver's next descriptor goes; checked, never trusted.</summary>
    public bool AcceptNotificationData(ushort offWrap) => (offWrap & 0x7FFF) < _size;

    public void Reset()
    {
        for (int i = 0; i < _all.Length; i++) { _all[i].InFlight = false; _pool[i] = _all[i]; }
        _poolCount = _pool.Length;
        Array.Clear(_idBusy);
        _inFlight = _descInFlight = 0;
        _nextAvail = _nextUsed = _signalledPos = 0;
        _availWrap = _usedWrap = _signalledWrap = true;   // §2.8.1: wrap counters start at 1
        _usedSinceSignal = 0;
        _unpublishedCount = 0;
        _usedLeftToLog = false;
        _popSeq = _usedSeq = 0;
        _resubmit?.Clear();
        Error = QueueError.None;
        ErrorDetail = null;
        _notificationsEnabled = true;
    }
}
