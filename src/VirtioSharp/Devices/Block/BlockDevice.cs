using System.Buffers.Binary;
using System.Text;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices.Block;

/// <summary>
/// virtio-blk device model (virtio 1.2 §5.2): IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; RO, CONFIG_WCE, MQ. It
/// never trusts the driver: every sector range is checked against the disk before the backend is touched.
/// </summary>
public sealed class BlockDevice<TMem> : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    private const int ScratchSize = 64 * 1024;
    private readonly IBlockBackend _backend;
    private readonly BlockDeviceOptions _o;
    private readonly byte[][] _scratch;
    private readonly QueueService<TMem>[] _service;
    private readonly BlockDeviceStats[] _queueStats;   // each written only by its queue's owner thread
    private DeviceContext<TMem>? _ctx;
    private byte _writeback = 1;

    /// <summary>A block device serving <paramref name="backend"/>, shaped by <paramref name="options"/> (defaults if null).</summary>
    public BlockDevice(IBlockBackend backend, BlockDeviceOptions? options = null)
    {
        _backend = backend;
        _o = options ?? new BlockDeviceOptions();
        if (_o.NumQueues < 1 || _o.NumQueues > 64) throw new ArgumentOutOfRangeException(nameof(options), "virtio-blk needs 1 to 64 queues");
        _scratch = Enumerable.Range(0, _o.NumQueues).Select(_ => new byte[ScratchSize]).ToArray();
        _service = Enumerable.Range(0, _o.NumQueues).Select(_ => new QueueService<TMem>(_o.QueueSize, _o.InjectCompletionDelay)).ToArray();
        _queueStats = Enumerable.Range(0, _o.NumQueues).Select(_ => new BlockDeviceStats()).ToArray();
        ulong f = Bit(BlkFeature.SegMax) | Bit(BlkFeature.BlkSize) | Bit(BlkFeature.Flush) | Bit(BlkFeature.ConfigWce)
                  | Bit(BlkFeature.Discard) | Bit(BlkFeature.WriteZeroes);
        if (_o.SizeMax != 0) f |= Bit(BlkFeature.SizeMax);
        if (backend.ReadOnly) f |= Bit(BlkFeature.ReadOnly);
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
    internal ulong CapacitySectors => _backend.Size >> BlkSpec.SectorShift;
    /// <summary>Counters summed over the queues (a snapshot; each queue counts on its own thread).</summary>
    public BlockDeviceStats Stats => BlockDeviceStats.Sum(_queueStats, _service.Sum(x => x.UsedElements));
    /// <summary>Requests may be replayed after a back-end restart: reads and writes are idempotent.</summary>
    public DeviceCapabilities Capabilities => DeviceCapabilities.Resubmit;
    /// <summary>seg_max as advertised in the config space (§5.2.4): the option, or queue size - 2 as QEMU.</summary>
    public uint SegMax => _o.SegMax != 0 ? _o.SegMax : (uint)Math.Max(1, _o.QueueSize - 2);

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        Span<byte> c = stackalloc byte[BlkSpec.ConfigSize];
        c.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(c[BlkSpec.Capacity..], CapacitySectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.SizeMax..], _o.SizeMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.SegMax..], SegMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.BlkSize..], _o.BlkSize);
        c[BlkSpec.Writeback] = _writeback;
        BinaryPrimitives.WriteUInt16LittleEndian(c[BlkSpec.NumQueues..], (ushort)_o.NumQueues);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxDiscardSectors..], _o.MaxDiscardSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxDiscardSeg..], _o.MaxDiscardSeg);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.DiscardSectorAlignment..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxWriteZeroesSectors..], _o.MaxWriteZeroesSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(c[BlkSpec.MaxWriteZeroesSeg..], _o.MaxWriteZeroesSeg);
        c[BlkSpec.WriteZeroesMayUnmap] = 1;
        c.Slice(offset, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source)
    {
        // Only the writeback byte is writable, and only with CONFIG_WCE (§5.2.5).
        if (offset <= BlkSpec.Writeback && offset + source.Length > BlkSpec.Writeback)
            _writeback = source[BlkSpec.Writeback - offset] != 0 ? (byte)1 : (byte)0;
    }

    /// <inheritdoc/>
    public bool AcceptFeatures(ulong features, out string? reason)
    {
        reason = null;
        return true;
    }

    /// <inheritdoc/>
    public void Activate(DeviceContext<TMem> context) => _ctx = context;

    /// <inheritdoc/>
    public void Reset()
    {
        _ctx = null;
        _writeback = 1;
        foreach (var s in _service) s.Reset();
    }

    /// <summary>On the queue's owner thread: serves every available request (the shared loop, with IN_ORDER batches).</summary>
    public void QueueNotify(int queue)
    {
        if (_ctx is not { } ctx) return;
        var handler = new Handler(this, ctx, queue);
        _service[queue].Run(ctx, queue, ref handler);
    }

    private readonly struct Handler(BlockDevice<TMem> device, DeviceContext<TMem> ctx, int queue) : IChainHandler<TMem>
    {
        public bool Ready => true;
        public uint Handle(DeviceQueue<TMem> q, DescriptorChain chain) =>
            device.Process(q, chain, device._scratch[queue], ctx, device._queueStats[queue]);
    }

    private uint Process(DeviceQueue<TMem> q, DescriptorChain chain, byte[] scratch, DeviceContext<TMem> ctx, BlockDeviceStats stats)
    {
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
        var writer = new ChainWriter<TMem>(mem, chain);
        BlkStatus status;
        uint payloadWritten = 0;
        switch (h.Type)
        {
            case BlkRequestType.In:
                status = DoRead(h.Sector, dataIn, ref writer, scratch, stats);
                payloadWritten = status == BlkStatus.Ok ? (uint)dataIn : 0;
                break;
            case BlkRequestType.Out:
                status = DoWrite(h.Sector, dataOut, ref reader, scratch, stats);
                break;
            case BlkRequestType.Flush:
                status = BlkStatus.Ok;
                _backend.Flush();
                stats.Flushes++;
                break;
            case BlkRequestType.GetId:
            {
                Span<byte> id = stackalloc byte[BlkSpec.IdBytes];
                id.Clear();
                Encoding.ASCII.GetBytes(_o.Serial.AsSpan(0, Math.Min(_o.Serial.Length, BlkSpec.IdBytes)), id);
                int n = (int)Math.Min(dataIn, BlkSpec.IdBytes);
                status = writer.Write(id[..n], out _) == MemStatus.Ok ? BlkStatus.Ok : BlkStatus.IoErr;
                payloadWritten = status == BlkStatus.Ok ? (uint)n : 0;
                break;
            }
            case BlkRequestType.Discard when ctx.Has(BlkFeature.Discard):
            case BlkRequestType.WriteZeroes when ctx.Has(BlkFeature.WriteZeroes):
                status = DoRanges(h.Type, dataOut, ref reader, stats);
                break;
            default:
                status = BlkStatus.Unsupp;
                stats.Unsupported++;
                break;
        }
        if (status == BlkStatus.IoErr) stats.Errors++;
        // The status byte is the last writable byte, wherever the data stopped.
        var last = chain.Writable[^1];
        for (int i = chain.Writable.Length - 1; last.Length == 0 && i > 0; i--) last = chain.Writable[i - 1];
        byte sb = (byte)status;
        if (mem.Write(last.Addr + last.Length - 1, new ReadOnlySpan<byte>(ref sb)) != MemStatus.Ok) return payloadWritten;
        return payloadWritten + 1;
    }

    private bool InRange(ulong sector, ulong bytes) =>
        (bytes & (BlkSpec.SectorSize - 1)) == 0 &&
        sector <= CapacitySectors && (bytes >> BlkSpec.SectorShift) <= CapacitySectors - sector;

    private BlkStatus DoRead(ulong sector, ulong bytes, ref ChainWriter<TMem> writer, byte[] scratch, BlockDeviceStats stats)
    {
        if (!InRange(sector, bytes)) { stats.OutOfRange++; return BlkStatus.IoErr; }
        ulong off = sector << BlkSpec.SectorShift;
        while (bytes > 0)
        {
            int n = (int)Math.Min(bytes, (ulong)scratch.Length);
            _backend.Read(off, scratch.AsSpan(0, n));
            if (writer.Write(scratch.AsSpan(0, n), out _) != MemStatus.Ok) return BlkStatus.IoErr;
            off += (ulong)n; bytes -= (ulong)n;
            stats.BytesRead += n;
        }
        stats.Reads++;
        return BlkStatus.Ok;
    }

    private BlkStatus DoWrite(ulong sector, ulong bytes, ref ChainReader<TMem> reader, byte[] scratch, BlockDeviceStats stats)
    {
        if (_backend.ReadOnly) { stats.ReadOnlyRejects++; return BlkStatus.IoErr; }
        if (!InRange(sector, bytes)) { stats.OutOfRange++; return BlkStatus.IoErr; }
        ulong off = sector << BlkSpec.SectorShift;
        while (bytes > 0)
        {
            int n = (int)Math.Min(bytes, (ulong)scratch.Length);
            if (reader.Read(scratch.AsSpan(0, n), out int got) != MemStatus.Ok || got != n) return BlkStatus.IoErr;
            _backend.Write(off, scratch.AsSpan(0, n));
            off += (ulong)n; bytes -= (ulong)n;
            stats.BytesWritten += n;
        }
        stats.Writes++;
        return BlkStatus.Ok;
    }

    private BlkStatus DoRanges(uint type, ulong bytes, ref ChainReader<TMem> reader, BlockDeviceStats stats)
    {
        if (_backend.ReadOnly) { stats.ReadOnlyRejects++; return BlkStatus.IoErr; }
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
            if (!InRange(s.Sector, (ulong)s.Sectors << BlkSpec.SectorShift)) { stats.OutOfRange++; return BlkStatus.IoErr; }
            segs[i] = s;
        }
        foreach (var s in segs)
        {
            if (discard) _backend.Discard(s.Sector << BlkSpec.SectorShift, (ulong)s.Sectors << BlkSpec.SectorShift);
            else _backend.WriteZeroes(s.Sector << BlkSpec.SectorShift, (ulong)s.Sectors << BlkSpec.SectorShift);
        }
        if (discard) stats.Discards++; else stats.WriteZeroes++;
        return BlkStatus.Ok;
    }
}
