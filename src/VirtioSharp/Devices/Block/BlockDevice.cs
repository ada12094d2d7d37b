using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices.Block;

/// <summary>
/// virtio-blk device model (virtio 1.2 §5.2): IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; RO, CONFIG_WCE, MQ,
/// TOPOLOGY. It never trusts the driver: every sector range is checked against the disk before storage is touched.
/// Requests go to an <see cref="IBlockStorage"/> asynchronously, many in flight per queue, with the guest's buffers
/// handed over as host vectors (zero copy) where the address space allows (<see cref="IDeviceMemory.MapForIo"/>), and
/// through a buffer of the device's own where it does not (the simulated bus).
/// </summary>
public sealed class BlockDevice<TMem> : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    private const int MaxCopyBytes = 64 << 20;   // the copy path's largest request
    // A host without an fd loop (the simulated machine) cannot wait on a completion eventfd: the queue looks again.
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(1);
    // Serve/reap rounds in one notification while the storage finishes at once; then the worker's next round goes on.
    private const int ServeRounds = 4;
    private readonly IBlockStorage _storage;
    private readonly BlockStorageInfo _info;
    private readonly BlockDeviceOptions _o;
    private readonly BlockQueueState<TMem>[] _queues;
    private readonly int _maxSegs;
    private readonly uint _blockSize;
    private DeviceContext<TMem>? _ctx;
    private long _capacitySectors;
    private volatile byte _writeback;
    private volatile bool _wceNegotiated, _flushNegotiated;

    /// <summary>A block device serving the synchronous <paramref name="backend"/> (adapted by <see cref="SyncBlockStorage"/>).</summary>
    public BlockDevice(IBlockBackend backend, BlockDeviceOptions? options = null) : this(new SyncBlockStorage(backend), options) { }

    /// <summary>A block device serving <paramref name="storage"/>, shaped by <paramref name="options"/> (defaults if null).</summary>
    public BlockDevice(IBlockStorage storage, BlockDeviceOptions? options = null)
    {
        _storage = storage;
        _info = storage.Info;
        _o = options ?? new BlockDeviceOptions();
        if (_o.NumQueues < 1 || _o.NumQueues > 64) throw new ArgumentOutOfRangeException(nameof(options), "virtio-blk needs 1 to 64 queues");
        if (_info.LogicalBlockSize is not (512 or 1024 or 2048 or 4096))
            throw new ArgumentException($"storage logical block size {_info.LogicalBlockSize} is not 512, 1024, 2048 or 4096", nameof(storage));
        _blockSize = Math.Max(_o.BlkSize, _info.LogicalBlockSize);
        if (_blockSize % _info.LogicalBlockSize != 0 || (_blockSize & (_blockSize - 1)) != 0)
            throw new ArgumentException($"blk_size {_o.BlkSize} must be a power of two and a multiple of the storage's logical block size {_info.LogicalBlockSize}", nameof(options));
        _maxSegs = (int)Math.Max(1, Math.Max(_o.MaxDiscardSeg, _o.MaxWriteZeroesSeg));
        _queues = Enumerable.Range(0, _o.NumQueues).Select(_ => new BlockQueueState<TMem>(_o.QueueSize, _o.InjectCompletionDelay)).ToArray();
        _capacitySectors = (long)(AlignedSize(_info.Size) >> BlkSpec.SectorShift);
        _writeback = _info.VolatileCache ? (byte)1 : (byte)0;
        ulong f = Bit(BlkFeature.SegMax) | Bit(BlkFeature.BlkSize) | Bit(BlkFeature.Topology);
        // Without a volatile cache there is nothing to flush: no FLUSH tells the driver the disk writes through (§5.2.5).
        if (_info.VolatileCache) f |= Bit(BlkFeature.Flush) | Bit(BlkFeature.ConfigWce);
        if (_info.SupportsDiscard) f |= Bit(BlkFeature.Discard);
        if (_info.SupportsWriteZeroes) f |= Bit(BlkFeature.WriteZeroes);
        if (_o.SizeMax != 0) f |= Bit(BlkFeature.SizeMax);
        if (_info.ReadOnly) f |= Bit(BlkFeature.ReadOnly);
        if (_o.NumQueues > 1) f |= Bit(BlkFeature.Mq);
        if (_o.OfferIndirect) f |= Bit(VirtioFeature.IndirectDesc);
        if (_o.OfferEventIdx) f |= Bit(VirtioFeature.EventIdx);
        if (!_o.LegacyOnly)
        {
            f |= Bit(VirtioFeature.Version1);
            if (_o.OfferAccessPlatform) f |= Bit(VirtioFeature.AccessPlatform);
            if (_o.OfferOrderPlatform) f |= Bit(VirtioFeature.OrderPlatform);
            if (_o.OfferPacked) f |= Bit(VirtioFeature.RingPacked);
            if (_o.OfferInOrder) f |= Bit(VirtioFeature.InOrder);
        }
        DeviceFeatures = f;
    }

    private static ulong Bit(int b) => 1UL << b;
    private ulong AlignedSize(ulong bytes) => bytes & ~((ulong)_blockSize - 1);

    /// <inheritdoc/>
    public DeviceId DeviceId => DeviceId.Block;
    /// <inheritdoc/>
    public ulong DeviceFeatures { get; }
    /// <inheritdoc/>
    public int QueueCount => _o.NumQueues;
    /// <inheritdoc/>
    public ushort MaxQueueSize => _o.QueueSize;
    /// <inheritdoc/>
    public int ConfigSize => BlkSpec.ConfigSize;
    /// <summary>The capacity in 512-byte sectors the driver sees now.</summary>
    public ulong CapacitySectors => (ulong)Volatile.Read(ref _capacitySectors);
    /// <summary>What the storage said it is when the device was made.</summary>
    public BlockStorageInfo StorageInfo => _info;
    /// <summary>blk_size: the logical block every request must be aligned to.</summary>
    public uint BlockSize => _blockSize;
    /// <summary>Each queue's state (its counters, for <see cref="BlockDeviceMetrics"/>).</summary>
    internal BlockQueueState<TMem>[] QueueStates => _queues;
    private Histogram<double>? _latency;
    /// <summary>The request latency histogram while a <see cref="BlockDeviceMetrics"/> is attached (null: not measured).</summary>
    internal Histogram<double>? Latency { get => Volatile.Read(ref _latency); set => Volatile.Write(ref _latency, value); }
    /// <summary>Counters summed over the queues (a snapshot; each queue counts on its own thread).</summary>
    public BlockDeviceStats Stats => BlockDeviceStats.Sum(_queues.Select(q => q.Stats).ToArray(), _queues.Sum(q => q.Service.UsedElements));
    /// <summary>Requests may be replayed after a back-end restart: reads and writes are idempotent.</summary>
    public DeviceCapabilities Capabilities => DeviceCapabilities.Resubmit;
    /// <summary>seg_max as advertised in the config space (§5.2.4): the option, or queue size - 2 as QEMU.</summary>
    public uint SegMax => _o.SegMax != 0 ? _o.SegMax : (uint)Math.Max(1, _o.QueueSize - 2);
    /// <summary>Whether writes are made durable before they complete: the driver turned the cache off (CONFIG_WCE), or cannot flush.</summary>
    public bool WriteThrough => _info.VolatileCache && (!_flushNegotiated || _writeback == 0);

    /// <summary>
    /// Any thread: re-reads the storage's size (a grown or shrunk image) and, if the capacity changed, tells the driver
    /// with a config-change notification (§5.2.4: capacity; §2.5.1). Returns whether it changed.
    /// </summary>
    public bool RefreshCapacity()
    {
        long now = (long)(AlignedSize(_storage.QuerySize()) >> BlkSpec.SectorShift);
        if (Interlocked.Exchange(ref _capacitySectors, now) == now) return false;
        _ctx?.ConfigChanged();
        return true;
    }

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        Span<byte> c = stackalloc byte[BlkSpec.ConfigSize];
        c.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(c[BlkSpec.Capacity..], CapacitySectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.SizeMax..], _o.SizeMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.SegMax..], SegMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.BlkSize..], _blockSize);
        uint phys = Math.Max(_info.PhysicalBlockSize, _blockSize);
        c[BlkSpec.PhysicalBlockExp] = (byte)Math.Max(0, System.Numerics.BitOperations.Log2(phys / _blockSize));
        BinaryPrimitives.WriteUInt16LittleEndian(c[BlkSpec.MinIoSize..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.OptIoSize..], _info.OptimalIoSize / _blockSize);
        c[BlkSpec.Writeback] = _writeback;
        BinaryPrimitives.WriteUInt16LittleEndian(c[BlkSpec.NumQueues..], (ushort)_o.NumQueues);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxDiscardSectors..], _o.MaxDiscardSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxDiscardSeg..], _o.MaxDiscardSeg);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.DiscardSectorAlignment..], Math.Max(_info.DiscardAlignment, _blockSize) >> BlkSpec.SectorShift);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxWriteZeroesSectors..], _o.MaxWriteZeroesSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxWriteZeroesSeg..], _o.MaxWriteZeroesSeg);
        c[BlkSpec.WriteZeroesMayUnmap] = _info.WriteZeroesMayUnmap ? (byte)1 : (byte)0;
        c.Slice(offset, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source)
    {
        // Only the writeback byte is writable, and only once CONFIG_WCE was negotiated (§5.2.5).
        if (!_wceNegotiated) return;
        if (offset <= BlkSpec.Writeback && offset + source.Length > BlkSpec.Writeback)
            _writeback = source[BlkSpec.Writeback - offset] != 0 ? (byte)1 : (byte)0;
    }

    /// <inheritdoc/>
    public bool AcceptFeatures(ulong features, out string? reason)
    {
        reason = null;
        _wceNegotiated = VirtioFeature.Has(features, BlkFeature.ConfigWce);
        _flushNegotiated = VirtioFeature.Has(features, BlkFeature.Flush);
        // §5.2.5: without FLUSH the driver cannot ask for durability, so the device writes through and says so.
        if (!_flushNegotiated) _writeback = 0;
        return true;
    }

    /// <inheritdoc/>
    public void Activate(DeviceContext<TMem> context) => _ctx = context;

    /// <inheritdoc/>
    public void Reset()
    {
        // Every owner thread has stopped; QueueStopping drained each queue that ran. What is left is waited for here
        // (a queue stopped by an error path) before the storage channels go.
        for (int i = 0; i < _queues.Length; i++)
        {
            var st = _queues[i];
            if (st.Io is { } io)
            {
                Drain(null, i, st);
                st.Source?.Dispose();
                io.Dispose();
            }
            st.Io = null; st.Source = null; st.Polling = false; st.Blocked = false;
            st.Service.Reset();
        }
        _ctx = null;
        _writeback = _info.VolatileCache ? (byte)1 : (byte)0;
        _wceNegotiated = _flushNegotiated = false;
    }

    /// <summary>On the owner thread: serves every available request and reaps what the storage finished.</summary>
    public void QueueNotify(int queue)
    {
        if (_ctx is not { } ctx) return;
        var st = _queues[queue];
        var io = st.Io ?? OpenIo(ctx, queue, st);
        if (st.IoInFlight > 0) Reap(ctx, queue, st, serveAgain: false);
        Serve(ctx, queue, st, io);
    }

    /// <inheritdoc/>
    public void QueueStopping(int queue)
    {
        var st = _queues[queue];
        if (st.Io is null) return;
        Drain(_ctx, queue, st);
    }

    private void Serve(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st, IBlockQueue io)
    {
        // Storage that finished requests at once (synchronous, or served inline) is reaped here, and the ring served
        // again if the storage was what stopped it. A loop of a few rounds, not a recursion: a driver that keeps the ring
        // full is served by the worker's next round (Wake), which also sees a stop.
        for (int round = 0; ; round++)
        {
            var handler = new Handler(this, ctx, queue, st);
            st.Service.Run(ctx, queue, ref handler);
            io.Kick();
            if (st.IoInFlight == 0) return;
            if (st.Polling)
            {
                // Whatever is done already is used now; the rest is looked at again soon.
                Reap(ctx, queue, st, serveAgain: false);
                if (st.IoInFlight > 0) ctx.WakeAfter(queue, PollInterval);
                return;
            }
            if (io.CompletionEvent is not null && !io.HasReadyCompletions) return;
            Reap(ctx, queue, st, serveAgain: false);
            if (!st.Blocked || ctx.Queues[queue] is null) return;
            st.Blocked = false;
            if (round == ServeRounds - 1) { ctx.Wake(queue); return; }
        }
    }

    private IBlockQueue OpenIo(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st)
    {
        var io = _storage.OpenQueue(queue, _o.QueueSize + _maxSegs);
        st.Io = io;
        if (io.CompletionEvent is { } ev)
        {
            st.OnReadable ??= () => OnCompletions(queue);
            try { st.Source = ctx.AddEventSource(queue, ev, st.OnReadable); }
            catch (NotSupportedException) { st.Polling = true; }
        }
        return io;
    }

    private void OnCompletions(int queue)
    {
        if (_ctx is not { } ctx) return;
        var st = _queues[queue];
        if (st.Io is not null) Reap(ctx, queue, st, serveAgain: true);
    }

    private void Reap(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st, bool serveAgain)
    {
        var io = st.Io!;
        bool evented = io.CompletionEvent is not null && !st.Polling;
        int n;
        while ((n = io.Reap(st.Reaped)) > 0)
        {
            for (int i = 0; i < n; i++) Finish(ctx, queue, st, st.Reaped[i]);
            // A short batch emptied the queue for now, and whatever finishes later makes the completion event readable
            // again (IBlockQueue's contract): asking once more only cost an eventfd read that found nothing, every round.
            if (evented && n < st.Reaped.Length) break;
        }
        if (ctx.Queues[queue] is { } q) st.Service.Commit(q);
        ctx.InterruptIfNeeded(queue);
        // Requests the loop left on the ring while the storage was full can go now.
        if (serveAgain && st.Blocked && ctx.Queues[queue] is not null)
        {
            st.Blocked = false;
            Serve(ctx, queue, st, io);
        }
    }

    /// <summary>Waits for every storage request of the queue; with a context their chains are used, without one dropped.</summary>
    private void Drain(DeviceContext<TMem>? ctx, int queue, BlockQueueState<TMem> st)
    {
        var io = st.Io!;
        io.Kick();
        long deadline = Environment.TickCount64 + (long)_o.DrainTimeout.TotalMilliseconds;
        while (st.IoInFlight > 0)
        {
            int n = io.Reap(st.Reaped);
            for (int i = 0; i < n; i++)
            {
                if (ctx is not null) Finish(ctx, queue, st, st.Reaped[i]);
                else Abandon(queue, st, st.Reaped[i]);
            }
            if (n > 0) continue;
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                // The storage is stuck: the buffers cannot be given back safely. The device stops working rather than
                // pretend; the memory stays the front-end's problem (DEVICE_NEEDS_RESET tells it).
                ctx?.NeedsReset($"queue {queue}: {st.IoInFlight} storage requests still in flight after {_o.DrainTimeout.TotalSeconds:0} s");
                return;
            }
            io.WaitForCompletions((int)Math.Min(left, 100));
        }
        if (ctx?.Queues[queue] is { } q)
        {
            st.Service.Commit(q);
            ctx.InterruptIfNeeded(queue);
        }
        st.Blocked = false;
    }

    private void Abandon(int queue, BlockQueueState<TMem> st, BlockCompletion c)
    {
        ref var s = ref st.Slots[(int)c.Tag];
        st.IoInFlight--;
        if (--s.Outstanding > 0) return;
        if (s.FenceToken >= 0) _ctx?.EndDirectIo(queue, s.FenceToken);
        Release(st, (int)c.Tag);
    }

    private readonly struct Handler(BlockDevice<TMem> device, DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st) : IChainHandler<TMem>
    {
        public bool Ready
        {
            get
            {
                if (st.FreeCount > 0 && st.IoInFlight + device._maxSegs <= st.Io!.Depth) return true;
                st.Blocked = true;
                return false;
            }
        }

        public uint Handle(DeviceQueue<TMem> q, DescriptorChain chain) => device.Start(q, chain, ctx, queue, st);
    }

    private uint Start(DeviceQueue<TMem> q, DescriptorChain chain, DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st)
    {
        var stats = st.Stats;
        var mem = q.Memory;
        if (chain.ReadableBytes < BlkSpec.HeaderSize || chain.WritableBytes < 1)
        {
            // No header or no status byte: nothing can be answered (§5.2.6.1). Return the buffer untouched.
            stats.Malformed++;
            return 0;
        }
        var reader = new ChainReader<TMem>(mem, chain);
        Span<byte> hb = stackalloc byte[BlkSpec.HeaderSize];
        if (reader.Read(hb, out _) != MemStatus.Ok) { stats.Malformed++; return 0; }
        var h = BlkHeader.Parse(hb);
        ulong dataIn = chain.WritableBytes - 1;            // bytes before the status byte
        ulong dataOut = chain.ReadableBytes - BlkSpec.HeaderSize;
        // The status byte is the last writable byte, wherever the data stopped.
        var last = chain.Writable[^1];
        for (int i = chain.Writable.Length - 1; last.Length == 0 && i > 0; i--) last = chain.Writable[i - 1];
        ulong statusAddr = last.Addr + last.Length - 1;
        BlkStatus status;
        uint payload = 0;
        switch (h.Type)
        {
            case BlkRequestType.In:
                status = CheckRange(h.Sector, dataIn, stats);
                if (status == BlkStatus.Ok) return Submit(ctx, queue, st, q, chain, BlockOp.Read, h.Sector, dataIn, statusAddr, ref reader);
                break;
            case BlkRequestType.Out:
                status = _info.ReadOnly ? ReadOnlyReject(stats) : CheckRange(h.Sector, dataOut, stats);
                if (status == BlkStatus.Ok) return Submit(ctx, queue, st, q, chain, BlockOp.Write, h.Sector, dataOut, statusAddr, ref reader);
                break;
            case BlkRequestType.Flush:
                return Submit(ctx, queue, st, q, chain, BlockOp.Flush, 0, 0, statusAddr, ref reader);
            case BlkRequestType.GetId:
            {
                Span<byte> id = stackalloc byte[BlkSpec.IdBytes];
                id.Clear();
                Encoding.ASCII.GetBytes(_o.Serial.AsSpan(0, Math.Min(_o.Serial.Length, BlkSpec.IdBytes)), id);
                int n = (int)Math.Min(dataIn, BlkSpec.IdBytes);
                var writer = new ChainWriter<TMem>(mem, chain);
                status = writer.Write(id[..n], out _) == MemStatus.Ok ? BlkStatus.Ok : BlkStatus.IoErr;
                payload = status == BlkStatus.Ok ? (uint)n : 0;
                break;
            }
            case BlkRequestType.Discard when ctx.Has(BlkFeature.Discard):
            case BlkRequestType.WriteZeroes when ctx.Has(BlkFeature.WriteZeroes):
                status = SubmitRanges(ctx, queue, st, q, chain, h.Type, dataOut, statusAddr, ref reader);
                if (status == BlkStatus.Ok) return ChainHandling.Pending;
                break;
            default:
                status = BlkStatus.Unsupp;
                stats.Unsupported++;
                break;
        }
        return Answer(mem, statusAddr, status, payload, stats);
    }

    private static uint Answer(TMem mem, ulong statusAddr, BlkStatus status, uint payload, BlockDeviceStats stats)
    {
        if (status == BlkStatus.IoErr) stats.Errors++;
        byte sb = (byte)status;
        if (mem.Write(statusAddr, new ReadOnlySpan<byte>(ref sb)) != MemStatus.Ok) return payload;
        return payload + 1;
    }

    private static BlkStatus ReadOnlyReject(BlockDeviceStats stats) { stats.ReadOnlyRejects++; return BlkStatus.IoErr; }

    private BlkStatus CheckRange(ulong sector, ulong bytes, BlockDeviceStats stats)
    {
        if (!InRange(sector, bytes)) { stats.OutOfRange++; return BlkStatus.IoErr; }
        // Storage with 4 KiB blocks cannot do less (O_DIRECT, a 4Kn disk); the driver was told blk_size.
        if (((sector << BlkSpec.SectorShift) | bytes) % _blockSize != 0) { stats.Misaligned++; return BlkStatus.IoErr; }
        return BlkStatus.Ok;
    }

    private bool InRange(ulong sector, ulong bytes)
    {
        ulong cap = CapacitySectors;
        return (bytes & (BlkSpec.SectorSize - 1)) == 0 && sector <= cap && (bytes >> BlkSpec.SectorShift) <= cap - sector;
    }

    private int TakeSlot(BlockQueueState<TMem> st, DeviceQueue<TMem> q, DescriptorChain chain, BlockOp op, ulong statusAddr)
    {
        int i = st.Free[--st.FreeCount];
        ref var s = ref st.Slots[i];
        s.Chain = chain; s.Queue = q; s.StatusAddr = statusAddr; s.Op = op;
        s.Outstanding = 0; s.Error = 0; s.FenceToken = -1; s.BounceToGuest = false; s.Bytes = 0;
        // Timed only while a listener wants the latency histogram: otherwise no clock read per request.
        s.Started = Latency is { Enabled: true } ? Stopwatch.GetTimestamp() : 0;
        return i;
    }

    private static void Release(BlockQueueState<TMem> st, int i)
    {
        ref var s = ref st.Slots[i];
        s.Chain = null; s.Queue = null; s.FenceToken = -1;
        st.Free[st.FreeCount++] = i;
    }

    private unsafe uint Submit(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st, DeviceQueue<TMem> q, DescriptorChain chain,
        BlockOp op, ulong sector, ulong bytes, ulong statusAddr, ref ChainReader<TMem> reader)
    {
        var io = st.Io!;
        int i = TakeSlot(st, q, chain, op, statusAddr);
        ref var s = ref st.Slots[i];
        s.Bytes = bytes;
        var flags = BlockRequestFlags.None;
        int count = 0;
        IoVec* vec = null;
        // The vectors and bounce buffers are pinned arrays: their addresses hold while the storage uses them.
        if (op is BlockOp.Read or BlockOp.Write && bytes > 0)
        {
            s.FenceToken = ctx.BeginDirectIo(queue);
            bool toGuest = op == BlockOp.Read;
            // Translated piece by piece, each checked for the access the storage makes; NoDirectAccess asks for the copy path.
            var map = HostVectors.Map(q.Memory, toGuest ? chain.Writable : chain.Readable, toGuest ? 0UL : BlkSpec.HeaderSize, bytes,
                toGuest ? Access.Write : Access.Read, ref s.Vectors, io.MaxVectors, ref count);
            if (map == MemStatus.NoDirectAccess)
            {
                // The copy path: the space only copies, or the buffers come in too many pieces for one request.
                if (bytes > MaxCopyBytes) return Fail(ctx, queue, st, i, BlkStatus.IoErr);
                st.Stats.Copied++;
                if (s.Bounce is null || (ulong)s.Bounce.Length < bytes) s.Bounce = GC.AllocateUninitializedArray<byte>((int)bytes, pinned: true);
                if (!toGuest && (reader.Read(s.Bounce!.AsSpan(0, (int)bytes), out int got) != MemStatus.Ok || (ulong)got != bytes))
                    return Fail(ctx, queue, st, i, BlkStatus.IoErr);
                s.BounceToGuest = toGuest;
                HostVectors.Ensure(ref s.Vectors, 1);
                s.Vectors![0] = new IoVec((nint)Unsafe.AsPointer(ref s.Bounce![0]), (nuint)bytes);
                count = 1;
            }
            else if (map != MemStatus.Ok) return Fail(ctx, queue, st, i, BlkStatus.IoErr);
            vec = (IoVec*)Unsafe.AsPointer(ref s.Vectors![0]);
            if (op == BlockOp.Write && WriteThrough) flags |= BlockRequestFlags.Fua;
        }
        s.Outstanding = 1;
        st.IoInFlight++;
        io.Submit(new BlockRequest
        {
            Op = op, Flags = flags, Offset = sector << BlkSpec.SectorShift, Length = bytes, Vectors = vec, VectorCount = count, Tag = (ulong)i,
        });
        return ChainHandling.Pending;
    }

    private uint Fail(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st, int i, BlkStatus status)
    {
        ref var s = ref st.Slots[i];
        if (s.FenceToken >= 0) ctx.EndDirectIo(queue, s.FenceToken);
        var mem = s.Queue!.Memory;
        ulong statusAddr = s.StatusAddr;
        Release(st, i);
        return Answer(mem, statusAddr, status, 0, st.Stats);
    }

    private BlkStatus SubmitRanges(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st, DeviceQueue<TMem> q, DescriptorChain chain,
        uint type, ulong bytes, ulong statusAddr, ref ChainReader<TMem> reader)
    {
        var stats = st.Stats;
        if (_info.ReadOnly) return ReadOnlyReject(stats);
        bool discard = type == BlkRequestType.Discard;
        uint maxSeg = discard ? _o.MaxDiscardSeg : _o.MaxWriteZeroesSeg;
        uint maxSectors = discard ? _o.MaxDiscardSectors : _o.MaxWriteZeroesSectors;
        if (bytes == 0 || bytes % BlkSpec.DiscardSegmentSize != 0 || bytes / BlkSpec.DiscardSegmentSize > maxSeg)
            return BlkStatus.Unsupp;
        Span<byte> sb = stackalloc byte[BlkSpec.DiscardSegmentSize];
        // Validate every segment before acting on any, so a bad one leaves the disk untouched.
        int count = (int)(bytes / BlkSpec.DiscardSegmentSize);
        Span<BlkRangeSegment> segs = stackalloc BlkRangeSegment[count];
        for (int i = 0; i < count; i++)
        {
            if (reader.Read(sb, out int got) != MemStatus.Ok || got != sb.Length) return BlkStatus.IoErr;
            var s = BlkRangeSegment.Parse(sb);
            if (discard ? s.Flags != 0 : (s.Flags & ~BlkSpec.WriteZeroesFlagUnmap) != 0) return BlkStatus.Unsupp;
            if (s.Sectors > maxSectors) return BlkStatus.IoErr;
            var range = CheckRange(s.Sector, (ulong)s.Sectors << BlkSpec.SectorShift, stats);
            if (range != BlkStatus.Ok) return range;
            segs[i] = s;
        }
        var io = st.Io!;
        int slot = TakeSlot(st, q, chain, discard ? BlockOp.Discard : BlockOp.WriteZeroes, statusAddr);
        st.Slots[slot].Outstanding = count;
        st.IoInFlight += count;
        foreach (var s in segs)
        {
            var flags = !discard && (s.Flags & BlkSpec.WriteZeroesFlagUnmap) != 0 ? BlockRequestFlags.Unmap : BlockRequestFlags.None;
            io.Submit(new BlockRequest
            {
                Op = discard ? BlockOp.Discard : BlockOp.WriteZeroes, Flags = flags,
                Offset = s.Sector << BlkSpec.SectorShift, Length = (ulong)s.Sectors << BlkSpec.SectorShift, Tag = (ulong)slot,
            });
        }
        return BlkStatus.Ok;
    }

    private void Finish(DeviceContext<TMem> ctx, int queue, BlockQueueState<TMem> st, BlockCompletion c)
    {
        if (c.Tag >= (ulong)st.Slots.Length || st.Slots[(int)c.Tag].Chain is null)
            throw new InvalidOperationException($"storage completed tag {c.Tag}, which is not in flight on queue {queue}");
        int i = (int)c.Tag;
        ref var s = ref st.Slots[i];
        st.IoInFlight--;
        if (c.Error != 0 && s.Error == 0) s.Error = c.Error;
        if (--s.Outstanding > 0) return;
        // The storage is done with the host vectors: a translation change may proceed.
        if (s.FenceToken >= 0) ctx.EndDirectIo(queue, s.FenceToken);
        var stats = st.Stats;
        var q = s.Queue!;
        var mem = q.Memory;
        var status = s.Error == 0 ? BlkStatus.Ok : s.Error == BlockCompletion.NotSupported ? BlkStatus.Unsupp : BlkStatus.IoErr;
        uint payload = 0;
        if (status == BlkStatus.Ok)
        {
            switch (s.Op)
            {
                case BlockOp.Read:
                    if (s.BounceToGuest)
                    {
                        var writer = new ChainWriter<TMem>(mem, s.Chain!);
                        if (writer.Write(s.Bounce.AsSpan(0, (int)s.Bytes), out _) != MemStatus.Ok) { status = BlkStatus.IoErr; break; }
                    }
                    payload = (uint)s.Bytes;   // IN: every data byte before the status byte
                    stats.Reads++; stats.BytesRead += (long)s.Bytes;
                    break;
                case BlockOp.Write: stats.Writes++; stats.BytesWritten += (long)s.Bytes; break;
                case BlockOp.Flush: stats.Flushes++; break;
                case BlockOp.Discard: stats.Discards++; break;
                case BlockOp.WriteZeroes: stats.WriteZeroes++; break;
            }
        }
        else if (status == BlkStatus.Unsupp) stats.Unsupported++;
        var chain = s.Chain!;
        ulong statusAddr = s.StatusAddr;
        if (s.Started != 0 && Latency is { } latency) latency.Record(BlockDeviceMetrics.Since(s.Started), BlockDeviceMetrics.OpTags[(int)s.Op]);
        Release(st, i);
        uint written = Answer(mem, statusAddr, status, payload, stats);
        st.Service.Complete(q, chain, written);
    }
}
