using System.Buffers.Binary;
using VirtioSharp.Devices.Block;
using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers.Block;

/// <summary>
/// virtio-blk driver: probes through the generic driver core, reads the config, and turns block operations into
/// requests, splitting them to seg_max, size_max and the DMA ops' largest mapping (bounce pools are small). Many
/// requests may be in flight across all queues; requests that do not fit wait in a backlog.
/// </summary>
public sealed class BlkDriver : IDisposable
{
    private const int SlotBytes = (BlkSpec.HeaderSize + 1 + 15) & ~15;   // header + status byte, padded (32)
    private sealed class Slot
    {
        public int Queue;
        public ulong Gpa;
        public BlkOp? Op;
        public Slot? NextFree;
    }

    private readonly record struct Part(BlkOp Op, uint Type, ulong Sector, BufferSegment[] Data, ulong Extra);

    private readonly VirtioDriverDevice _dev;
    private readonly IDmaPlatform _platform;
    private readonly Slot?[] _free;
    private readonly Slot[][] _slots;
    private readonly ulong[] _slotMemory;
    private readonly Queue<Part>[] _backlog;
    private readonly List<BufferSegment> _scratchSegs = new();
    private int _nextQueue;

    private BlkDriver(VirtioDriverDevice dev, IDmaPlatform platform)
    {
        _dev = dev;
        _platform = platform;
        Span<byte> c = stackalloc byte[BlkSpec.ConfigSize];
        dev.ReadConfig(0, c);
        CapacitySectors = BinaryPrimitives.ReadUInt64LittleEndian(c[BlkSpec.Capacity..]);
        SegMax = dev.Has(BlkFeature.SegMax) ? Math.Max(1, BinaryPrimitives.ReadUInt32LittleEndian(c[BlkSpec.SegMax..])) : uint.MaxValue;
        SizeMax = dev.Has(BlkFeature.SizeMax) ? BinaryPrimitives.ReadUInt32LittleEndian(c[BlkSpec.SizeMax..]) : 0;
        BlockSize = dev.Has(BlkFeature.BlkSize) ? BinaryPrimitives.ReadUInt32LittleEndian(c[BlkSpec.BlkSize..]) : BlkSpec.SectorSize;
        MaxDiscardSectors = BinaryPrimitives.ReadUInt32LittleEndian(c[BlkSpec.MaxDiscardSectors..]);
        ReadOnly = dev.Has(BlkFeature.ReadOnly);
        int nq = dev.Queues.Count;
        _free = new Slot?[nq];
        _slots = new Slot[nq][];
        _slotMemory = new ulong[nq];
        _backlog = new Queue<Part>[nq];
        for (int q = 0; q < nq; q++)
        {
            int size = dev.Queue(q).Size;
            _slotMemory[q] = platform.Allocator.Allocate((ulong)(size * SlotBytes));
            _slots[q] = new Slot[size];
            for (int i = size - 1; i >= 0; i--)
                _free[q] = _slots[q][i] = new Slot { Queue = q, Gpa = _slotMemory[q] + (ulong)(i * SlotBytes), NextFree = _free[q] };
            _backlog[q] = new Queue<Part>();
        }
        dev.OnUsed = Drain;
    }

    /// <summary>The generic driver device underneath (queues, DMA ops, features).</summary>
    public VirtioDriverDevice Device => _dev;
    /// <summary>Capacity in 512-byte sectors, from the config space (§5.2.4).</summary>
    public ulong CapacitySectors { get; private set; }

    /// <summary>Re-reads the capacity from the config space (after a config-change interrupt, §5.2.4) and returns it.</summary>
    public ulong RefreshCapacity()
    {
        Span<byte> c = stackalloc byte[8];
        _dev.ReadConfig(BlkSpec.Capacity, c);
        return CapacitySectors = BinaryPrimitives.ReadUInt64LittleEndian(c);
    }

    /// <summary>
    /// Turns the device's volatile write cache on or off through the writeback byte (VIRTIO_BLK_F_CONFIG_WCE, §5.2.5);
    /// false if the feature was not negotiated. With it off, every write is durable when it completes.
    /// </summary>
    public bool SetWriteback(bool writeback)
    {
        if (!_dev.Has(BlkFeature.ConfigWce)) return false;
        _dev.Transport.WriteConfig(BlkSpec.Writeback, [writeback ? (byte)1 : (byte)0]);
        return true;
    }

    /// <summary>The writeback byte as the device reports it now (1: write-back cache, 0: write-through).</summary>
    public byte Writeback
    {
        get
        {
            Span<byte> b = stackalloc byte[1];
            _dev.ReadConfig(BlkSpec.Writeback, b);
            return b[0];
        }
    }
    /// <summary>seg_max: data segments per request (uint.MaxValue when SEG_MAX was not offered).</summary>
    public uint SegMax { get; }
    /// <summary>size_max: bytes per segment (0 when SIZE_MAX was not offered: no limit).</summary>
    public uint SizeMax { get; }
    /// <summary>blk_size: the device's optimal block size (512 when BLK_SIZE was not offered).</summary>
    public uint BlockSize { get; }
    /// <summary>max_discard_sectors from the config space.</summary>
    public uint MaxDiscardSectors { get; }
    /// <summary>VIRTIO_BLK_F_RO was negotiated: the device refuses writes.</summary>
    public bool ReadOnly { get; }
    /// <summary>Request queues set up (num_queues with MQ, else 1).</summary>
    public int NumQueues => _dev.Queues.Count;
    /// <summary>Virtio requests submitted and not yet completed.</summary>
    public int InFlight { get; private set; }
    /// <summary>Virtio requests submitted since probe (after splitting).</summary>
    public long RequestsSubmitted { get; private set; }

    /// <summary>The features this driver supports; the DMA policy adds the platform bits.</summary>
    public static ulong DriverFeatures =>
        Bit(BlkFeature.SizeMax) | Bit(BlkFeature.SegMax) | Bit(BlkFeature.BlkSize) | Bit(BlkFeature.ReadOnly) |
        Bit(BlkFeature.Flush) | Bit(BlkFeature.Mq) | Bit(BlkFeature.Discard) | Bit(BlkFeature.WriteZeroes) |
        Bit(BlkFeature.ConfigWce) | Bit(BlkFeature.Topology) | Bit(VirtioFeature.IndirectDesc) | Bit(VirtioFeature.EventIdx) | Bit(VirtioFeature.RingPacked) | Bit(VirtioFeature.InOrder);

    private static ulong Bit(int b) => 1UL << b;

    /// <summary>Probes a block device on <paramref name="transport"/> (queues up to <paramref name="maxQueueSize"/>) and reads its config; throws <see cref="VirtioProbeException"/> if it is not usable.</summary>
    public static BlkDriver Probe(IVirtioTransport transport, DriverEnvironment env, ushort maxQueueSize = 128)
    {
        if (transport.DeviceId != DeviceId.Block) throw new VirtioProbeException($"device is {transport.DeviceId}, not a block device");
        // With MQ the queue count comes from config, readable once features are settled (§5.2.5).
        var dev = VirtioDriverDevice.Probe(transport, env, DriverFeatures, 1, maxQueueSize, (t, features) =>
        {
            if (!VirtioFeature.Has(features, BlkFeature.Mq)) return 1;
            Span<byte> b = stackalloc byte[2];
            t.ReadConfig(BlkSpec.NumQueues, b);
            return Math.Clamp((int)BinaryPrimitives.ReadUInt16LittleEndian(b), 1, 64);
        });
        // The driver's own setup (config read) can still fail: without this the device stayed DRIVER_OK with its
        // rings allocated and mapped, and nobody left to remove it.
        try { return new BlkDriver(dev, env.Platform); }
        catch { dev.FailProbe(); throw; }
    }

    /// <summary>Largest data piece one descriptor may carry: size_max and the DMA ops' limit, whole sectors.</summary>
    public ulong MaxPiece
    {
        get
        {
            ulong m = Math.Min(_dev.Dma.MaxMappingSize, SizeMax == 0 ? uint.MaxValue : SizeMax);
            return Math.Max(BlkSpec.SectorSize, m & ~(ulong)(BlkSpec.SectorSize - 1));
        }
    }

    private int MaxSegsPerRequest(int queue)
    {
        int byRing = _dev.Has(VirtioFeature.IndirectDesc) ? 64 - 2 : _dev.Queue(queue).Size - 2;
        return (int)Math.Max(1, Math.Min(SegMax, (uint)Math.Max(1, byRing)));
    }

    /// <summary>
    /// Submits a read or write of guest buffers <paramref name="data"/> (each a whole number of sectors) at
    /// <paramref name="sector"/>; it is split into as many requests as the limits need.
    /// </summary>
    public BlkOp Submit(uint type, ulong sector, ReadOnlySpan<BufferSegment> data)
    {
        if (type is not (BlkRequestType.In or BlkRequestType.Out)) throw new ArgumentException("Submit takes IN or OUT; use Flush/Discard/WriteZeroes/GetId for the others");
        foreach (var s in data)
            if (s.Length == 0 || s.Length % BlkSpec.SectorSize != 0)
                throw new ArgumentException($"buffer of {s.Length} bytes is not a whole number of {BlkSpec.SectorSize}-byte sectors");
        var op = new BlkOp();
        int q = PickQueue();
        // A request's data, header and status are all mapped at once. Capping only each piece at MaxMappingSize let
        // one request need more than the mapper can ever hold (a 64 KiB bounce pool: 64 KiB of data + header +
        // status slots), which failed with IoErr even with nothing else in flight. Keep a request's data to half
        // the largest mapping so the whole request fits; requests that fit but find the pool busy wait in the backlog.
        ulong maxRequest = Math.Max(BlkSpec.SectorSize, (_dev.Dma.MaxMappingSize / 2) & ~(ulong)(BlkSpec.SectorSize - 1));
        ulong maxPiece = Math.Min(MaxPiece, maxRequest);
        int maxSegs = MaxSegsPerRequest(q);
        var parts = new List<Part>();
        _scratchSegs.Clear();
        ulong partSector = sector, partBytes = 0;
        foreach (var s in data)
        {
            for (ulong off = 0; off < s.Length;)
            {
                ulong n = Math.Min(Math.Min(maxPiece, s.Length - off), maxRequest - partBytes);
                _scratchSegs.Add(new BufferSegment(s.Gpa + off, (uint)n));
                partBytes += n;
                off += n;
                if (_scratchSegs.Count == maxSegs || partBytes == maxRequest)
                {
                    parts.Add(new Part(op, type, partSector, _scratchSegs.ToArray(), 0));
                    partSector += partBytes / BlkSpec.SectorSize;
                    partBytes = 0;
                    _scratchSegs.Clear();
                }
            }
        }
        if (_scratchSegs.Count > 0) parts.Add(new Part(op, type, partSector, _scratchSegs.ToArray(), 0));
        return Start(op, q, parts);
    }

    /// <summary>FLUSH: completes once earlier completed writes are durable (§5.2.6).</summary>
    public BlkOp SubmitFlush() => Start(new BlkOp(), PickQueue(), [new Part(null!, BlkRequestType.Flush, 0, [], 0)]);

    /// <summary>GET_ID into a 20-byte guest buffer.</summary>
    public BlkOp SubmitGetId(ulong idGpa) =>
        Start(new BlkOp(), PickQueue(), [new Part(null!, BlkRequestType.GetId, 0, [new BufferSegment(idGpa, BlkSpec.IdBytes)], 0)]);

    /// <summary>DISCARD or WRITE_ZEROES of one range; <paramref name="segmentGpa"/> is a 16-byte guest buffer for the range.</summary>
    public BlkOp SubmitRange(uint type, ulong sector, uint sectors, ulong segmentGpa, bool unmap = false)
    {
        if (type is not (BlkRequestType.Discard or BlkRequestType.WriteZeroes)) throw new ArgumentException("SubmitRange takes DISCARD or WRITE_ZEROES");
        Span<byte> b = stackalloc byte[BlkSpec.DiscardSegmentSize];
        new BlkRangeSegment(sector, sectors, unmap && type == BlkRequestType.WriteZeroes ? BlkSpec.WriteZeroesFlagUnmap : 0).Write(b);
        _platform.Cpu.Write(segmentGpa, b);
        return Start(new BlkOp(), PickQueue(), [new Part(null!, type, 0, [new BufferSegment(segmentGpa, BlkSpec.DiscardSegmentSize)], 0)]);
    }

    private int PickQueue()
    {
        int q = _nextQueue;
        _nextQueue = (_nextQueue + 1) % NumQueues;
        return q;
    }

    private BlkOp Start(BlkOp op, int q, List<Part> parts)
    {
        op.Parts = parts.Count;
        op.PartsLeft = parts.Count;
        foreach (var p in parts) _backlog[q].Enqueue(p with { Op = op });
        Pump(q);
        return op;
    }

    /// <summary>Moves backlog parts into the ring while slots and descriptors last, then kicks.</summary>
    private void Pump(int q)
    {
        var ring = _dev.Queue(q);
        bool added = false;
        while (_backlog[q].Count > 0 && _free[q] is { } slot)
        {
            var p = _backlog[q].Peek();
            var st = AddPart(ring, slot, p, out var dmaStatus);
            if (st == QueueStatus.NoSpace || st == QueueStatus.MapFailed && dmaStatus == DmaStatus.Exhausted && ring.Outstanding > 0)
                break;   // wait for completions to free descriptors or mappings
            _backlog[q].Dequeue();
            if (st != QueueStatus.Ok)
            {
                p.Op.PartDone(BlkStatus.IoErr);
                continue;
            }
            _free[q] = slot.NextFree;
            slot.Op = p.Op;
            InFlight++;
            RequestsSubmitted++;
            added = true;
        }
        if (added) _dev.Kick(q);
    }

    private QueueStatus AddPart(DriverQueue ring, Slot slot, Part p, out DmaStatus dmaStatus)
    {
        Span<byte> hb = stackalloc byte[BlkSpec.HeaderSize + 1];
        new BlkHeader(p.Type, p.Sector).Write(hb);
        hb[BlkSpec.HeaderSize] = 0xFF;   // a status the device must overwrite
        _platform.Cpu.Write(slot.Gpa, hb);
        var header = new BufferSegment(slot.Gpa, BlkSpec.HeaderSize);
        var status = new BufferSegment(slot.Gpa + BlkSpec.HeaderSize, 1);
        bool deviceWrites = p.Type is BlkRequestType.In or BlkRequestType.GetId;
        int n = p.Data.Length;
        Span<BufferSegment> readable = stackalloc BufferSegment[deviceWrites ? 1 : 1 + n];
        Span<BufferSegment> writable = stackalloc BufferSegment[deviceWrites ? n + 1 : 1];
        readable[0] = header;
        if (deviceWrites) { p.Data.CopyTo(writable); writable[n] = status; }
        else { p.Data.CopyTo(readable[1..]); writable[0] = status; }
        return ring.Add(readable, writable, slot, out dmaStatus);
    }

    private void Drain(int q)
    {
        var ring = _dev.Queue(q);
        Span<byte> sb = stackalloc byte[1];
        while (ring.GetUsed(out var token, out _) == QueueStatus.Ok)
        {
            var slot = (Slot)token!;
            _platform.Cpu.Read(slot.Gpa + BlkSpec.HeaderSize, sb);
            // A hostile device may write anything: only 0, 1 and 2 mean something.
            var status = sb[0] <= (byte)BlkStatus.Unsupp ? (BlkStatus)sb[0] : BlkStatus.IoErr;
            var op = slot.Op!;
            slot.Op = null;
            slot.NextFree = _free[q];
            _free[q] = slot;
            InFlight--;
            op.PartDone(status);
        }
        if (ring.IsBroken)
        {
            // The device broke the queue (bad used element): nothing more will come back on it. Fail the operations
            // waiting on it instead of leaving them to hang; their slots and mappings stay held until removal resets
            // the device, since it may still be using the buffers.
            foreach (var slot in _slots[q])
                if (slot.Op is { IsCompleted: false } op) op.Fail(BlkStatus.IoErr);
        }
        Pump(q);
    }

    /// <summary>Runs the machine until every submitted operation completed; false if the device stopped answering.</summary>
    public bool WaitAll() => _dev.WaitUntil(() => InFlight == 0 && _backlog.All(b => b.Count == 0));

    /// <summary>Runs the machine until <paramref name="op"/> completed.</summary>
    public bool Wait(BlkOp op) => _dev.WaitUntil(() => op.IsCompleted);

    // Convenience API over byte arrays: the driver copies through guest buffers it allocates, as a kernel would.

    /// <summary>Reads <paramref name="destination"/>.Length bytes from <paramref name="sector"/> through a temporary guest buffer, waiting for completion.</summary>
    public BlkStatus Read(ulong sector, Span<byte> destination)
    {
        ulong gpa = _platform.Allocator.Allocate((ulong)destination.Length);
        try
        {
            var op = Submit(BlkRequestType.In, sector, [new BufferSegment(gpa, (uint)destination.Length)]);
            if (!Wait(op)) throw new TimeoutException("virtio-blk read: the device did not complete the request (see the transport and IOMMU logs)");
            if (op.Status == BlkStatus.Ok) _platform.Cpu.Read(gpa, destination);
            return op.Status;
        }
        finally { _platform.Allocator.Free(gpa, (ulong)destination.Length); }
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="sector"/> through a temporary guest buffer, waiting for completion.</summary>
    public BlkStatus Write(ulong sector, ReadOnlySpan<byte> source)
    {
        ulong gpa = _platform.Allocator.Allocate((ulong)source.Length);
        try
        {
            _platform.Cpu.Write(gpa, source);
            var op = Submit(BlkRequestType.Out, sector, [new BufferSegment(gpa, (uint)source.Length)]);
            if (!Wait(op)) throw new TimeoutException("virtio-blk write: the device did not complete the request (see the transport and IOMMU logs)");
            return op.Status;
        }
        finally { _platform.Allocator.Free(gpa, (ulong)source.Length); }
    }

    /// <summary>FLUSH, waiting for completion.</summary>
    public BlkStatus Flush()
    {
        var op = SubmitFlush();
        if (!Wait(op)) throw new TimeoutException("virtio-blk flush did not complete");
        return op.Status;
    }

    /// <summary>DISCARD or WRITE_ZEROES of <paramref name="sectors"/> sectors at <paramref name="sector"/>, waiting for completion.</summary>
    public BlkStatus Range(uint type, ulong sector, uint sectors, bool unmap = false)
    {
        ulong gpa = _platform.Allocator.Allocate(BlkSpec.DiscardSegmentSize);
        try
        {
            var op = SubmitRange(type, sector, sectors, gpa, unmap);
            if (!Wait(op)) throw new TimeoutException("virtio-blk discard/write-zeroes did not complete");
            return op.Status;
        }
        finally { _platform.Allocator.Free(gpa, BlkSpec.DiscardSegmentSize); }
    }

    /// <summary>The device's id string (GET_ID), or null if the request failed.</summary>
    public string? GetId()
    {
        ulong gpa = _platform.Allocator.Allocate(BlkSpec.IdBytes);
        try
        {
            var op = SubmitGetId(gpa);
            if (!Wait(op) || op.Status != BlkStatus.Ok) return null;
            Span<byte> b = stackalloc byte[BlkSpec.IdBytes];
            _platform.Cpu.Read(gpa, b);
            int end = b.IndexOf((byte)0);
            return System.Text.Encoding.ASCII.GetString(end < 0 ? b : b[..end]);
        }
        finally { _platform.Allocator.Free(gpa, BlkSpec.IdBytes); }
    }

    /// <summary>Removes the device: reset, fail whatever was in flight, unmap and free everything.</summary>
    public void Dispose()
    {
        var tokens = _dev.Remove();
        foreach (Slot s in tokens) s.Op?.Fail(BlkStatus.IoErr);
        foreach (var b in _backlog) { while (b.Count > 0) b.Dequeue().Op.Fail(BlkStatus.IoErr); }
        for (int q = 0; q < _slotMemory.Length; q++)
            _platform.Allocator.Free(_slotMemory[q], (ulong)(_dev.Queues[q]!.Size * SlotBytes));
    }
}
