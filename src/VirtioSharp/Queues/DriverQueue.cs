// Over 400 lines on purpose: the driver side of a ring (map and add, kick decision, take used and unmap, detach) is
// one hot-path type like DeviceQueue; about a quarter of it is its documented public API.
using System.Runtime.CompilerServices;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Queues;

/// <summary>
/// Driver side of a virtqueue: split (virtio 1.2 §2.7, shaped after Linux virtio_ring.c) or, when
/// <see cref="QueueOptions.Packed"/> is set, packed (§2.8, in <see cref="PackedDriverRing"/>); callers see one API either
/// way. Rings and indirect tables come from the device's coherent allocator; every buffer is mapped through the device's
/// DMA ops; what unmap needs is kept in driver-private arrays, never re-read from memory the device can write. A device
/// that breaks a ring rule leaves the queue broken until reset.
/// </summary>
public sealed unsafe class DriverQueue : IDisposable
{
    private struct HeadState
    {
        public object? Token;
        public ushort Descs;         // descriptors taken from the ring
        public ushort Maps;          // entries used in _maps[head]
        public bool Premapped;       // the driver's own mappings: synced, not unmapped
        public uint WritableBytes;
        public bool Indirect;
        public uint Seq;             // add order, for IN_ORDER batches
    }

    // Packed layout: a sealed type behind a null check, so the split path pays one predictable branch, no dispatch.
    private readonly PackedDriverRing? _packed;
    private readonly IDmaOps _dma;
    private readonly QueueOptions _options;
    private readonly RingEndian _endian;           // copies of option fields read on every add / get
    private readonly bool _eventIdx;
    private readonly bool _indirectDesc;
    private readonly RingBarriers _barriers;
    private readonly bool _inOrder;
    private bool _usedEventUnfenced;   // used_event stored since the last full barrier (see UsedIdxAfterEventFence)
    private readonly int _maxIndirect;
    private readonly ushort _size;
    private readonly int _mask;
    private readonly CoherentBuffer _ring;
    private readonly SplitRingLayout _busLayout;   // what the device is told
    private readonly VirtqDesc* _desc;
    private readonly ushort* _avail;               // flags, idx, ring[], used_event
    private readonly byte* _used;                  // flags, idx, ring[], avail_event
    private readonly ushort[] _next;               // private copy of each descriptor's next link
    private readonly HeadState[] _heads;
    private readonly DmaMapping[]?[] _maps;
    private readonly CoherentBuffer _indirectPool;
    private readonly VirtqDesc* _indirect;
    private readonly ushort[] _order;              // outstanding heads in add order (IN_ORDER)
    private int _orderHead;
    private uint _seq;
    private int _batchLast = -1;                   // IN_ORDER: head closing the batch being handed out
    private uint _batchLen;
    private ushort _freeHead;
    private int _numFree;
    private ushort _availIdx;
    private ushort _lastUsed;
    private ushort _addedSinceKick;
    private ushort _availFlagsShadow;
    private int _outstanding;
    private QueueError _error;
    private string? _errorDetail;
    private bool _disposed;

    /// <summary>A queue of <paramref name="size"/> entries laid out per <paramref name="options"/>: rings and buffers are mapped through <paramref name="dma"/>, and the driver writes the rings through host pointers into <paramref name="ram"/>.</summary>
    public DriverQueue(IDmaOps dma, GuestMemory ram, ushort size, QueueOptions options)
    {
        _dma = dma;
        _options = options;
        _size = size;
        if (options.Packed)
        {
            _packed = new PackedDriverRing(dma, ram, size, options);
            _next = []; _heads = []; _maps = []; _order = [];
            return;
        }
        if (!SplitRingLayout.IsValidSize(size))
            throw new ArgumentOutOfRangeException(nameof(size), $"split queue size {size} must be a power of two between 1 and 32768");
        if (options.LegacyAlign != 0 && (options.LegacyAlign & (options.LegacyAlign - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(options), "legacy ring alignment must be a power of two");
        _endian = options.Endian;
        _eventIdx = options.EventIdx;
        _indirectDesc = options.IndirectDesc;
        _barriers = new RingBarriers(options.Barriers, options.Ordering);
        _maxIndirect = options.MaxIndirect;
        _inOrder = options.InOrder;
        _mask = size - 1;
        ulong align = options.LegacyAlign != 0 ? options.LegacyAlign : SplitRingLayout.UsedAlign;
        ulong usedOff = SplitRingLayout.AlignUp(SplitRingLayout.DescBytes(size) + SplitRingLayout.AvailBytes(size), align);
        ulong total = usedOff + SplitRingLayout.UsedBytes(size);
        if (options.LegacyAlign != 0) total = SplitRingLayout.LegacyBytes(size, options.LegacyAlign);
        if (dma.AllocCoherent(total, out _ring) != DmaStatus.Ok)
            throw new InsufficientMemoryException($"no coherent memory for a {size}-entry ring ({total} bytes) from {dma.Name} ops");
        byte* host = ram.HostPointer(_ring.Gpa, total);
        _desc = (VirtqDesc*)host;
        _avail = (ushort*)(host + SplitRingLayout.DescBytes(size));
        _used = host + usedOff;
        _barriers.Track(_ring);
        _busLayout = new SplitRingLayout(size, _ring.Bus, _ring.Bus + SplitRingLayout.DescBytes(size), _ring.Bus + usedOff, options.EventIdx, options.Endian);

        _next = new ushort[size];
        _heads = new HeadState[size];
        _maps = new DmaMapping[]?[size];
        _order = options.InOrder ? new ushort[size] : [];
        if (options.IndirectDesc)
        {
            ulong bytes = (ulong)size * (ulong)options.MaxIndirect * VirtqDesc.Size;
            if (dma.AllocCoherent(bytes, out _indirectPool) != DmaStatus.Ok)
            {
                _barriers.Free(dma, _ring);
                throw new InsufficientMemoryException($"no coherent memory for {size} indirect tables ({bytes} bytes)");
            }
            _indirect = (VirtqDesc*)ram.HostPointer(_indirectPool.Gpa, bytes);
            _barriers.Track(_indirectPool);
        }
        ResetRingState();
    }

    /// <summary>Entries in the ring.</summary>
    public ushort Size => _size;
    /// <summary>Whether the queue uses the packed layout.</summary>
    public bool IsPacked => _packed is not null;
    /// <summary>The negotiated ring options.</summary>
    public QueueOptions Options => _options;
    /// <summary>
    /// Ring addresses as the device must be told them (bus addresses). Packed: Desc = descriptor ring, Avail = driver
    /// event suppression area, Used = device event suppression area (§2.8.10).
    /// </summary>
    public SplitRingLayout DeviceLayout => _packed is { } p ? p.DeviceLayout : _busLayout;
    /// <summary>The coherent allocation holding the rings.</summary>
    public CoherentBuffer RingMemory => _packed is { } p ? p.RingMemory : _ring;
    /// <summary>Descriptors free for new buffers.</summary>
    public int FreeDescriptors => _packed is { } p ? p.FreeDescriptors : _numFree;
    /// <summary>Buffers added and not yet returned as used.</summary>
    public int Outstanding => _packed is { } p ? p.Outstanding : _outstanding;
    /// <summary>The DMA ops buffers are mapped with.</summary>
    public IDmaOps Dma => _dma;
    /// <summary>Whether the device broke a ring rule; the queue refuses work until reset.</summary>
    public bool IsBroken => Error != QueueError.None;
    /// <summary>The rule the device broke, or <see cref="QueueError.None"/>.</summary>
    public QueueError Error => _packed is { } p ? p.Error : _error;
    /// <summary>What exactly went wrong, for logs.</summary>
    public string? ErrorDetail => _packed is { } p ? p.ErrorDetail : _errorDetail;

    /// <summary>
    /// The 16 bits after the vq index in a NOTIFICATION_DATA notification (§2.9): split, the avail idx (next_off = bits
    /// 0-14, next_wrap = bit 15); packed, the offset of the next descriptor to be made available and the wrap counter.
    /// </summary>
    public ushort NotifyOffWrap => _packed is { } p ? p.NotifyOffWrap : _availIdx;

    /// <summary>The whole 32-bit notification value for queue <paramref name="vq"/> (vqn in bits 0-15).</summary>
    public uint NotificationData(int vq) => PackedRing.NotificationData(vq, NotifyOffWrap);

    private void ResetRingState()
    {
        for (int i = 0; i < _size - 1; i++) _next[i] = (ushort)(i + 1);
        _next[_size - 1] = 0;
        _freeHead = 0;
        _numFree = _size;
        _availIdx = 0;
        _lastUsed = 0;
        _addedSinceKick = 0;
        _availFlagsShadow = 0;
        _outstanding = 0;
        _orderHead = 0;
        _seq = 0;
        _batchLast = -1;
        new Span<byte>(_desc, (int)(_busLayout.Used - _busLayout.Desc + SplitRingLayout.UsedBytes(_size))).Clear();
    }

    private ushort E(ushort v) => _endian.Fix(v);
    private uint E(uint v) => _endian.Fix(v);

    /// <summary>
    /// Adds one chain: <paramref name="readable"/> segments (device reads) then <paramref name="writable"/> ones. On any
    /// mapping failure every mapping already made is undone and the ring is unchanged.
    /// </summary>
    public QueueStatus Add(ReadOnlySpan<BufferSegment> readable, ReadOnlySpan<BufferSegment> writable, object token, out DmaStatus dmaStatus) =>
        Add(new SegmentSource(readable, writable), token, out dmaStatus);

    /// <summary>
    /// Adds one chain of buffers the driver mapped beforehand with <see cref="Dma"/> (Linux's premapped mode, e.g. a
    /// receive pool mapped once): <paramref name="readable"/> must be to-device or bidirectional mappings,
    /// <paramref name="writable"/> from-device or bidirectional (else <see cref="QueueStatus.MapFailed"/> with
    /// <see cref="DmaStatus.BadAddress"/>, nothing added). The queue keeps its own copy of each record, syncs the
    /// buffers for the device now and for the CPU when the chain is used or detached, and never unmaps them: the
    /// driver does, after the chain is back.
    /// </summary>
    public QueueStatus AddPremapped(ReadOnlySpan<DmaMapping> readable, ReadOnlySpan<DmaMapping> writable, object token, out DmaStatus dmaStatus) =>
        Add(new PremappedSource(readable, writable), token, out dmaStatus);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private QueueStatus Add<TSource>(TSource src, object token, out DmaStatus dmaStatus) where TSource : IChainSource, allows ref struct
    {
        dmaStatus = DmaStatus.Ok;
        ArgumentNullException.ThrowIfNull(token);
        ObjectDisposedException.ThrowIf(_disposed, this);
        int total = src.Total;
        if (total == 0) throw new ArgumentException("a chain needs at least one buffer");
        if (_packed is { } p) return p.Add(src, token, out dmaStatus);
        if (IsBroken) return QueueStatus.Broken;
        bool indirect = _indirectDesc && total > 1 && total <= _maxIndirect;
        int needed = indirect ? 1 : total;
        if (_numFree < needed) return QueueStatus.NoSpace;

        ushort head = _freeHead;
        // Map everything first so a failure leaves the ring untouched.
        dmaStatus = src.Map(_dma, ref _maps[head], out uint writableBytes);
        if (dmaStatus != DmaStatus.Ok) return QueueStatus.MapFailed;
        var maps = _maps[head]!;
        int readableCount = src.Readable;

        ref var hs = ref _heads[head];
        hs.Token = token;
        hs.Maps = (ushort)total;
        hs.Premapped = src.Premapped;
        hs.WritableBytes = writableBytes;
        hs.Indirect = indirect;
        hs.Seq = _seq++;
        if (_inOrder) _order[(_orderHead + _outstanding) & _mask] = head;
        if (indirect)
        {
            VirtqDesc* table = _indirect + (nuint)head * (nuint)_maxIndirect;
            for (int i = 0; i < total; i++)
            {
                var flags = (i >= readableCount ? DescFlags.Write : DescFlags.None) | (i + 1 < total ? DescFlags.Next : DescFlags.None);
                table[i] = new VirtqDesc(maps[i].Bus, maps[i].Length, flags, (ushort)(i + 1)).WithEndian(_endian);
            }
            ulong tableBus = _indirectPool.Bus + (ulong)head * (ulong)_maxIndirect * VirtqDesc.Size;
            _desc[head] = new VirtqDesc(tableBus, (uint)(total * VirtqDesc.Size), DescFlags.Indirect, 0).WithEndian(_endian);
            hs.Descs = 1;
            _freeHead = _next[head];
        }
        else
        {
            ushort i = head, last = head;
            for (int k = 0; k < total; k++)
            {
                var flags = (k >= readableCount ? DescFlags.Write : DescFlags.None) | (k + 1 < total ? DescFlags.Next : DescFlags.None);
                _desc[i] = new VirtqDesc(maps[k].Bus, maps[k].Length, flags, _next[i]).WithEndian(_endian);
                last = i;
                i = _next[i];
            }
            hs.Descs = (ushort)total;
            _freeHead = _next[last];
        }
        _numFree -= needed;
        _outstanding++;

        // Publish: ring entry, then (release) the index that makes it visible (§2.7.13.2).
        _avail[2 + (_availIdx & _mask)] = E(head);
        _availIdx++;
        _barriers.Publish();
        Volatile.Write(ref _avail[1], E(_availIdx));
        _addedSinceKick++;
        return QueueStatus.Ok;
    }

    /// <summary>After one or more adds: does the device want a notification? (§2.7.10, EVENT_IDX §2.7.7.2)</summary>
    public bool KickPrepare()
    {
        if (_packed is { } p) return p.KickPrepare();
        // Our avail idx store must be visible before we read the device's suppression state.
        _barriers.Full();
        ushort added = _addedSinceKick;
        _addedSinceKick = 0;
        if (added == 0) return false;
        if (_options.EventIdx)
        {
            ushort availEvent = E(Volatile.Read(ref *(ushort*)(_used + 4 + 8 * _size)));
            return EventIdx.NeedEvent(availEvent, _availIdx, (ushort)(_availIdx - added));
        }
        ushort flags = E(Volatile.Read(ref *(ushort*)_used));
        return (flags & RingFlags.UsedNoNotify) == 0;
    }

    /// <summary>True if the device has returned buffers not yet taken with <see cref="GetUsed"/>.</summary>
    public bool HasUsed
    {
        get
        {
            if (_packed is { } p) return p.HasUsed;
            if (IsBroken) return false;
            if (_batchLast >= 0 || E(Volatile.Read(ref *(ushort*)(_used + 2))) != _lastUsed) return true;
            return _usedEventUnfenced && UsedIdxAfterEventFence() != _lastUsed;
        }
    }

    /// <summary>
    /// Takes one used buffer: validates the device's id and length, unmaps (which makes device-written data visible to
    /// the CPU) and returns the caller's token.
    /// </summary>
    public QueueStatus GetUsed(out object? token, out uint length)
    {
        if (_packed is { } p) return p.GetUsed(out token, out length);
        token = null;
        length = 0;
        if (IsBroken) return QueueStatus.Broken;
        if (_batchLast >= 0) return TakeInOrder(out token, out length);
        ushort usedIdx = E(Volatile.Read(ref *(ushort*)(_used + 2)));   // acquire: entries below are read after
        if (usedIdx == _lastUsed && (!_usedEventUnfenced || (usedIdx = UsedIdxAfterEventFence()) == _lastUsed))
            return QueueStatus.Empty;
        if ((ushort)(usedIdx - _lastUsed) > _size) return FailUsed(QueueError.UsedIndexTooFarAhead, usedIdx, 0);
        var elem = *(VirtqUsedElem*)(_used + 4 + 8 * (_lastUsed & _mask));   // one read: a private copy
        uint id = E(elem.Id);
        uint len = E(elem.Len);
        if (id >= _size) return FailUsed(QueueError.UsedIdOutOfRange, id, len);
        ref var hs = ref _heads[id];
        if (hs.Token is null) return FailUsed(QueueError.UsedIdNotOutstanding, id, len);
        if (len > hs.WritableBytes) return FailUsed(QueueError.UsedLengthTooLarge, id, len);
        if (_inOrder)
        {
            // §2.7.9: one element, at the batch's first slot, names the batch's last buffer; used idx moved past them all.
            uint batch = hs.Seq - _heads[_order[_orderHead]].Seq + 1;
            if (batch > (ushort)(usedIdx - _lastUsed)) return FailUsed(QueueError.UsedBatchPastIndex, id, batch);
            _batchLast = (int)id;
            _batchLen = len;
            return TakeInOrder(out token, out length);
        }

        Detach((ushort)id, ref hs);
        token = hs.Token;
        hs.Token = null;
        length = len;
        _lastUsed++;
        if ((_availFlagsShadow & RingFlags.AvailNoInterrupt) == 0 && _eventIdx)
        {
            Volatile.Write(ref _avail[2 + _size], E(_lastUsed));
            _usedEventUnfenced = true;
        }
        return QueueStatus.Ok;
    }

    /// <summary>
    /// A full barrier, then used idx again. Linux stores used_event with virtio_store_mb (virtqueue_get_buf_ctx_split):
    /// a driver that finds the ring empty and waits for an interrupt must have made its used_event visible before that
    /// last read of used idx, or the device, publishing an entry at the same moment, can read the old used_event and not
    /// interrupt while the driver goes to sleep (store→load, §2.7.10). One fence per drain, before the read that can
    /// end it, gives the same guarantee as one per buffer.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ushort UsedIdxAfterEventFence()
    {
        _usedEventUnfenced = false;
        _barriers.Full();
        return E(Volatile.Read(ref *(ushort*)(_used + 2)));
    }

    // IN_ORDER: hands out the oldest outstanding buffer of the current batch; skipped ones were used in full (§2.7.9).
    private QueueStatus TakeInOrder(out object? token, out uint length)
    {
        ushort front = _order[_orderHead];
        ref var hs = ref _heads[front];
        length = front == _batchLast ? _batchLen : hs.WritableBytes;
        if (front == _batchLast) _batchLast = -1;
        Detach(front, ref hs);
        token = hs.Token;
        hs.Token = null;
        _orderHead = (_orderHead + 1) & _mask;
        _lastUsed++;
        if ((_availFlagsShadow & RingFlags.AvailNoInterrupt) == 0 && _eventIdx)
        {
            Volatile.Write(ref _avail[2 + _size], E(_lastUsed));
            _usedEventUnfenced = true;
        }
        return QueueStatus.Ok;
    }

    private void Detach(ushort head, ref HeadState hs)
    {
        ChainMapping.Release(_dma, _maps[head]!, hs.Maps, hs.Premapped);
        if (!_inOrder)
        {
            // Walk our private links, not the descriptors in shared memory.
            ushort last = head;
            for (int k = 1; k < hs.Descs; k++) last = _next[last];
            _next[last] = _freeHead;
            _freeHead = head;
        }
        // IN_ORDER: descriptors are taken in ring order (§2.7.5) and come back oldest first, so the links stay a ring.
        _numFree += hs.Descs;
        hs.Maps = 0;
        _outstanding--;
    }

    // Messages are built out of line so their string-building locals stay out of GetUsed's frame.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private QueueStatus FailUsed(QueueError error, uint value, uint len) => error switch
    {
        QueueError.UsedIndexTooFarAhead => Fail(error, $"used idx {value} is {(ushort)(value - _lastUsed)} ahead of {_lastUsed}, more than the queue size {_size}"),
        QueueError.UsedIdOutOfRange => Fail(error, $"used element {_lastUsed} has id {value}, but the queue has {_size} descriptors"),
        QueueError.UsedIdNotOutstanding => Fail(error, $"used element {_lastUsed} returns head {value}, which is not outstanding (used twice or never made available)"),
        QueueError.UsedBatchPastIndex => Fail(error, $"in-order used element {_lastUsed} names head {value}, closing a batch of {len} buffers, but used idx advanced by only {(ushort)(E(Volatile.Read(ref *(ushort*)(_used + 2))) - _lastUsed)}"),
        _ => Fail(error, $"used element for head {value} claims {len} bytes written into {_heads[value].WritableBytes} writable bytes"),
    };

    private QueueStatus Fail(QueueError error, string detail)
    {
        _error = error;
        _errorDetail = detail;
        return QueueStatus.Broken;
    }

    /// <summary>Suppresses used-buffer interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event far ahead).</summary>
    public void DisableCallbacks()
    {
        if (_packed is { } p) { p.DisableCallbacks(); return; }
        _availFlagsShadow |= RingFlags.AvailNoInterrupt;
        if (!_options.EventIdx) Volatile.Write(ref _avail[0], E(_availFlagsShadow));
    }

    /// <summary>Re-enables interrupts; returns false if used buffers are already pending (process them first).</summary>
    public bool EnableCallbacks()
    {
        if (_packed is { } p) return p.EnableCallbacks();
        _availFlagsShadow &= unchecked((ushort)~RingFlags.AvailNoInterrupt);
        if (_options.EventIdx) Volatile.Write(ref _avail[2 + _size], E(_lastUsed));
        else Volatile.Write(ref _avail[0], E(_availFlagsShadow));
        _barriers.Full();
        _usedEventUnfenced = false;
        return !HasUsed;
    }

    /// <summary>
    /// After the device was reset: unmaps every outstanding buffer and returns their tokens; the ring starts over.
    /// Must not be called while the device can still use the queue.
    /// </summary>
    public List<object> DetachUnused()
    {
        var tokens = new List<object>();
        if (_packed is { } p)
        {
            p.DetachUnused(tokens);
            return tokens;
        }
        for (ushort h = 0; h < _size; h++)
        {
            ref var hs = ref _heads[h];
            if (hs.Token is null) continue;
            ChainMapping.Release(_dma, _maps[h]!, hs.Maps, hs.Premapped);
            hs.Maps = 0;
            tokens.Add(hs.Token);
            hs.Token = null;
        }
        _error = QueueError.None;
        _errorDetail = null;
        ResetRingState();
        return tokens;
    }

    /// <summary>Unmaps buffers still outstanding and frees the rings and indirect tables.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        DetachUnused();
        _disposed = true;
        if (_packed is { } p) { p.Free(); return; }
        if (_options.IndirectDesc) _barriers.Free(_dma, _indirectPool);
        _barriers.Free(_dma, _ring);
    }
}
