using System.Runtime.CompilerServices;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Queues;

/// <summary>
/// Driver side of a packed virtqueue (virtio 1.2 §2.8, shaped after Linux virtio_ring.c), behind <see cref="DriverQueue"/>.
/// Ring and indirect tables come from the device's coherent allocator; what unmap needs is kept per buffer id in private
/// arrays; the device's used descriptors are read once and validated, and a bad one breaks the queue.
/// </summary>
internal sealed unsafe class PackedDriverRing
{
    private struct IdState
    {
        public object? Token;
        public ushort Descs;          // ring slots the chain took
        public ushort Maps;
        public bool Premapped;        // the driver's own mappings: synced, not unmapped
        public ushort NextFree;       // free-id list link
        public uint WritableBytes;
        public uint Seq;              // add order, for IN_ORDER batches
    }

    private readonly IDmaOps _dma;
    private readonly bool _eventIdx;
    private readonly bool _indirectDesc;
    private readonly bool _inOrder;
    private readonly RingBarriers _barriers;
    private readonly int _maxIndirect;
    private readonly ushort _size;
    private readonly CoherentBuffer _ring;
    private readonly SplitRingLayout _busLayout;   // desc ring, driver area, device area
    private readonly PackedDesc* _desc;
    private readonly ushort* _driverEvent;         // off_wrap, flags: written by us (§2.8.14)
    private readonly uint* _deviceEvent;           // written by the device; read as one 32-bit snapshot
    private readonly IdState[] _ids;
    private readonly DmaMapping[]?[] _maps;
    private readonly ushort[] _order;              // outstanding ids in add order (IN_ORDER)
    private readonly CoherentBuffer _indirectPool;
    private readonly PackedDesc* _indirect;
    private ushort _freeId;
    private int _numFree;
    private int _nextAvail;
    private bool _availWrap;
    private int _lastUsed;
    private bool _usedWrap;
    private int _slotsSinceKick;                   // ring slots made available since the last KickPrepare
    private ushort _eventFlagsShadow;
    private bool _eventUnfenced;                   // driver event offset stored since the last full barrier
    private int _orderHead;
    private uint _seq;
    private int _batchLast = -1;                   // IN_ORDER: id closing the batch being handed out
    private uint _batchLen;

    public PackedDriverRing(IDmaOps dma, GuestMemory ram, ushort size, QueueOptions options)
    {
        if (!PackedRing.IsValidSize(size))
            throw new ArgumentOutOfRangeException(nameof(size), $"packed queue size {size} must be between 1 and 32768");
        if (options.LegacyAlign != 0 || options.Endian.BigEndian)
            throw new ArgumentException("packed rings exist only on modern (VERSION_1, little-endian) devices", nameof(options));
        _dma = dma;
        _eventIdx = options.EventIdx;
        _indirectDesc = options.IndirectDesc;
        _inOrder = options.InOrder;
        _barriers = new RingBarriers(options.Barriers, options.Ordering);
        _maxIndirect = options.MaxIndirect;
        _size = size;
        ulong descBytes = PackedRing.DescBytes(size);
        ulong total = descBytes + 2 * PackedRing.EventBytes;
        if (dma.AllocCoherent(total, out _ring) != DmaStatus.Ok)
            throw new InsufficientMemoryException($"no coherent memory for a {size}-entry packed ring ({total} bytes) from {dma.Name} ops");
        _barriers.Track(_ring);
        byte* host = ram.HostPointer(_ring.Gpa, total);
        _desc = (PackedDesc*)host;
        _driverEvent = (ushort*)(host + descBytes);
        _deviceEvent = (uint*)(host + descBytes + PackedRing.EventBytes);
        _busLayout = new SplitRingLayout(size, _ring.Bus, _ring.Bus + descBytes, _ring.Bus + descBytes + PackedRing.EventBytes, options.EventIdx, options.Endian);
        _ids = new IdState[size];
        _maps = new DmaMapping[]?[size];
        _order = new ushort[size];
        if (options.IndirectDesc)
        {
            ulong bytes = (ulong)size * (ulong)options.MaxIndirect * PackedDesc.Size;
            if (dma.AllocCoherent(bytes, out _indirectPool) != DmaStatus.Ok)
            {
                _barriers.Free(dma, _ring);
                throw new InsufficientMemoryException($"no coherent memory for {size} indirect tables ({bytes} bytes)");
            }
            _indirect = (PackedDesc*)ram.HostPointer(_indirectPool.Gpa, bytes);
            _barriers.Track(_indirectPool);
        }
        ResetRingState();
    }

    public ushort Size => _size;
    public SplitRingLayout DeviceLayout => _busLayout;
    public CoherentBuffer RingMemory => _ring;
    public int FreeDescriptors => _numFree;
    public int Outstanding { get; private set; }
    public QueueError Error { get; private set; }
    public string? ErrorDetail { get; private set; }
    public bool IsBroken => Error != QueueError.None;
    /// <summary>next_off | next_wrap for NOTIFICATION_DATA (§2.9): where the next descriptor will be made available.</summary>
    public ushort NotifyOffWrap => PackedRing.OffWrap(_nextAvail, _availWrap);

    public void ResetRingState()
    {
        for (int i = 0; i < _size; i++) _ids[i] = new IdState { NextFree = (ushort)(i + 1) };
        _freeId = 0;
        _numFree = _size;
        _nextAvail = _lastUsed = 0;
        _availWrap = _usedWrap = true;     // §2.8.1: both wrap counters start at 1
        _slotsSinceKick = 0;
        _eventFlagsShadow = PackedRing.EventEnable;
        _orderHead = 0;
        _seq = 0;
        _batchLast = -1;
        Outstanding = 0;
        new Span<byte>(_desc, (int)(PackedRing.DescBytes(_size) + 2 * PackedRing.EventBytes)).Clear();
    }

    private static ushort E(ushort v) => PackedRing.Le(v);
    private static uint E(uint v) => PackedRing.Le(v);
    private static ulong E(ulong v) => PackedRing.Le(v);

    // Inlined into the DeviceQueue/DriverQueue facade: no extra call per chain for the packed layout.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public QueueStatus Add<TSource>(TSource src, object token, out DmaStatus dmaStatus) where TSource : IChainSource, allows ref struct
    {
        dmaStatus = DmaStatus.Ok;
        int total = src.Total;
        if (IsBroken) return QueueStatus.Broken;
        bool indirect = _indirectDesc && total > 1 && total <= _maxIndirect;
        int needed = indirect ? 1 : total;
        if (_numFree < needed) return QueueStatus.NoSpace;   // ids never run out first: each outstanding id holds a slot

        ushort id = _freeId;
        // Map everything first so a failure leaves the ring untouched.
        dmaStatus = src.Map(_dma, ref _maps[id], out uint writableBytes);
        if (dmaStatus != DmaStatus.Ok) return QueueStatus.MapFailed;
        var maps = _maps[id]!;
        int readableCount = src.Readable;

        int head = _nextAvail;
        bool headWrap = _availWrap;
        ushort headFlags;
        if (indirect)
        {
            // §2.8.19: table entries carry only WRITE; their ids and other flags are reserved.
            PackedDesc* table = _indirect + (nuint)id * (nuint)_maxIndirect;
            for (int i = 0; i < total; i++)
                table[i] = new PackedDesc(E(maps[i].Bus), E(maps[i].Length), 0, E((ushort)(i >= readableCount ? (ushort)DescFlags.Write : 0)));
            ulong tableBus = _indirectPool.Bus + (ulong)id * (ulong)_maxIndirect * PackedDesc.Size;
            WriteBody(head, tableBus, (uint)(total * PackedDesc.Size), id);
            headFlags = (ushort)((ushort)DescFlags.Indirect | PackedRing.AvailBits(headWrap));
            Advance(ref _nextAvail, ref _availWrap, 1);
        }
        else
        {
            headFlags = 0;
            for (int k = 0; k < total; k++)
            {
                ushort flags = (ushort)((k >= readableCount ? (ushort)DescFlags.Write : 0) | (k + 1 < total ? (ushort)DescFlags.Next : 0)
                                        | PackedRing.AvailBits(_availWrap));
                // Every descriptor carries the id (the device reads it from the last one, §2.8.6). Only the head's
                // flags publish the chain, so the others are written whole, in one 16-byte store.
                if (k == 0)
                {
                    WriteBody(_nextAvail, maps[k].Bus, maps[k].Length, id);
                    headFlags = flags;
                }
                else _desc[_nextAvail] = new PackedDesc(E(maps[k].Bus), E(maps[k].Length), E(id), E(flags));
                Advance(ref _nextAvail, ref _availWrap, 1);
            }
        }
        // §2.8.21: the head's flags go last, after everything else of the chain is visible.
        _barriers.Publish();
        Volatile.Write(ref _desc[head].Flags, E(headFlags));

        ref var st2 = ref _ids[id];
        _freeId = st2.NextFree;
        st2.Token = token;
        st2.Maps = (ushort)total;
        st2.Premapped = src.Premapped;
        st2.Descs = (ushort)needed;
        st2.WritableBytes = writableBytes;
        st2.Seq = _seq++;
        if (_inOrder)
        {
            int at = _orderHead + Outstanding;   // packed sizes need not be powers of two: no mask, and no division
            _order[at >= _size ? at - _size : at] = id;
        }
        _numFree -= needed;
        Outstanding++;
        _slotsSinceKick += needed;
        return QueueStatus.Ok;
    }

    private void WriteBody(int slot, ulong addr, uint len, ushort id)
    {
        ref var d = ref _desc[slot];
        d.Addr = E(addr);
        d.Len = E(len);
        d.Id = E(id);
    }

    private void Advance(ref int pos, ref bool wrap, int n)
    {
        pos += n;
        if (pos >= _size) { pos -= _size; wrap = !wrap; }
    }

    /// <summary>Reads the device event suppression area (§2.8.14) and decides whether to notify.</summary>
    public bool KickPrepare()
    {
        _barriers.Full();   // our flags stores before the device's suppression state
        int added = _slotsSinceKick;
        _slotsSinceKick = 0;
        if (added == 0) return false;
        uint snap = E(Volatile.Read(ref *_deviceEvent));
        ushort offWrap = (ushort)snap, flags = (ushort)(snap >> 16);
        if (flags == PackedRing.EventDisable) return false;
        // ENABLE, a reserved value, DESC without EVENT_IDX or an offset past the ring: notify. A spurious kick is
        // harmless (§2.8.14 devices must handle them); a suppressed one could hang the queue.
        if (flags != PackedRing.EventDesc || !_eventIdx || (offWrap & 0x7FFF) >= _size) return true;
        // The window starts `added` slots back, unwrapped (§2.8.10: notify once the event's descriptor was made available).
        // A start position and its wrap bit alone would fold two or more laps added between kicks onto a short window
        // and miss the device's event; 2*size-1 slots already reach every event position, and keep the 16-bit math exact.
        int old = _nextAvail - Math.Min(added, 2 * _size - 1);
        return PackedRing.NeedEvent(offWrap, _availWrap, _size, _nextAvail, old);
    }

    public bool HasUsed
    {
        get
        {
            if (IsBroken) return false;
            if (_batchLast >= 0 || PackedRing.IsUsed(E(Volatile.Read(ref _desc[_lastUsed].Flags)), _usedWrap)) return true;
            return _eventUnfenced && PackedRing.IsUsed((ushort)(TailAfterEventFence() >> 48), _usedWrap);
        }
    }

    // Inlined into the DeviceQueue/DriverQueue facade: no extra call per chain for the packed layout.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public QueueStatus GetUsed(out object? token, out uint length)
    {
        token = null;
        length = 0;
        if (IsBroken) return QueueStatus.Broken;
        if (_batchLast < 0)
        {
            // len, id and flags in one aligned 8-byte acquire load: a private copy, and id/len can be no older than the
            // flags that published them (the device writes flags last, §2.8.21).
            ulong tail = E(Volatile.Read(ref *(ulong*)((byte*)(_desc + _lastUsed) + PackedDesc.LenOffset)));
            if (!PackedRing.IsUsed((ushort)(tail >> 48), _usedWrap)
                && (!_eventUnfenced || !PackedRing.IsUsed((ushort)((tail = TailAfterEventFence()) >> 48), _usedWrap)))
                return QueueStatus.Empty;
            uint id = (ushort)(tail >> 32);
            uint len = (uint)tail;
            if (id >= _size) return FailUsed(QueueError.UsedIdOutOfRange, id, len);
            ref var hs = ref _ids[id];
            if (hs.Token is null) return FailUsed(QueueError.UsedIdNotOutstanding, id, len);
            if (len > hs.WritableBytes) return FailUsed(QueueError.UsedLengthTooLarge, id, len);
            if (!_inOrder)
            {
                token = Detach((ushort)id, ref hs);
                length = len;
                AfterUsed();
                return QueueStatus.Ok;
            }
            // §2.8.20: one used descriptor for a batch names its last buffer; earlier ones were used in full.
            _batchLast = (int)id;
            _batchLen = len;
        }
        ushort front = _order[_orderHead];
        ref var fs = ref _ids[front];
        length = front == _batchLast ? _batchLen : fs.WritableBytes;
        if (front == _batchLast) _batchLast = -1;
        token = Detach(front, ref fs);
        _orderHead = _orderHead + 1 == _size ? 0 : _orderHead + 1;
        AfterUsed();
        return QueueStatus.Ok;
    }

    private object Detach(ushort id, ref IdState hs)
    {
        ChainMapping.Release(_dma, _maps[id]!, hs.Maps, hs.Premapped);
        // The next used descriptor follows this chain's slots (§2.8.7); the count is ours, not the device's.
        Advance(ref _lastUsed, ref _usedWrap, hs.Descs);
        _numFree += hs.Descs;
        var token = hs.Token!;
        hs.Token = null;
        hs.Maps = 0;
        hs.NextFree = _freeId;
        _freeId = id;
        Outstanding--;
        return token;
    }

    private void AfterUsed()
    {
        if (_eventFlagsShadow == PackedRing.EventDesc)
        {
            Volatile.Write(ref _driverEvent[0], E(PackedRing.OffWrap(_lastUsed, _usedWrap)));
            _eventUnfenced = true;
        }
    }

    /// <summary>
    /// A full barrier, then the next used descriptor's len/id/flags again: the driver event offset stored since the
    /// last fence must be visible before the read that lets the driver sleep (Linux: virtio_store_mb in
    /// virtqueue_get_buf_ctx_packed; §2.8.10), once per drain. See DriverQueue.UsedIdxAfterEventFence.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong TailAfterEventFence()
    {
        _eventUnfenced = false;
        _barriers.Full();
        return E(Volatile.Read(ref *(ulong*)((byte*)(_desc + _lastUsed) + PackedDesc.LenOffset)));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailUsed(QueueError error, uint value, uint len) => error switch
    {
        QueueError.UsedIdOutOfRange => Fail(error, $"used descriptor at slot {_lastUsed} has id {value}, but ids are below the queue size {_size}"),
        QueueError.UsedIdNotOutstanding => Fail(error, $"used descriptor at slot {_lastUsed} returns id {value}, which is not outstanding (used twice or never made available)"),
        _ => Fail(error, $"used descriptor for id {value} claims {len} bytes written into {_ids[value].WritableBytes} writable bytes"),
    };

    private QueueStatus Fail(QueueError error, string detail)
    {
        Error = error;
        ErrorDetail = detail;
        return QueueStatus.Broken;
    }

    public void DisableCallbacks()
    {
        if (_eventFlagsShadow == PackedRing.EventDisable) return;
        _eventFlagsShadow = PackedRing.EventDisable;
        Volatile.Write(ref _driverEvent[1], E(_eventFlagsShadow));
    }

    public bool EnableCallbacks()
    {
        // With EVENT_IDX ask for an interrupt at the next used slot (§2.8.14); the offset goes before the flags.
        if (_eventIdx) Volatile.Write(ref _driverEvent[0], E(PackedRing.OffWrap(_lastUsed, _usedWrap)));
        _eventFlagsShadow = _eventIdx ? PackedRing.EventDesc : PackedRing.EventEnable;
        Volatile.Write(ref _driverEvent[1], E(_eventFlagsShadow));
        _barriers.Full();
        _eventUnfenced = false;
        return !HasUsed;
    }

    public void DetachUnused(List<object> tokens)
    {
        for (ushort id = 0; id < _size; id++)
        {
            ref var hs = ref _ids[id];
            if (hs.Token is null) continue;
            ChainMapping.Release(_dma, _maps[id]!, hs.Maps, hs.Premapped);
            hs.Maps = 0;
            tokens.Add(hs.Token);
            hs.Token = null;
        }
        Error = QueueError.None;
        ErrorDetail = null;
        ResetRingState();
    }

    public void Free()
    {
        if (_indirectDesc) _barriers.Free(_dma, _indirectPool);
        _barriers.Free(_dma, _ring);
    }
}
