using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>
/// virtio-blk end to end on the simulated machine: every request type, the range checks that keep the disk untouched,
/// read-only disks, a file backend, multiqueue, many requests in flight, and splitting to the device's and the DMA ops'
/// limits.
/// </summary>
public class BlkBehaviourTests
{
    private sealed class Setup : IDisposable
    {
        public Setup(IBlockBackend? backend = null, BlockDeviceOptions? options = null, DmaMode mode = DmaMode.Direct,
            SimTransport transport = SimTransport.Pci, ulong bouncePool = 1UL << 20, bool probe = true)
        {
            Rig = new SimRig(mode, bouncePoolSize: bouncePool);
            Backend = backend ?? new MemoryBackend(1 << 20);
            Device = new BlockDevice<Mem>(Backend, (options ?? new BlockDeviceOptions()) with { OfferAccessPlatform = Rig.AccessPlatform });
            Rig.Add(Device, transport);
            if (probe) Driver = BlkDriver.Probe(Rig.DriverTransport(), Rig.Environment());
        }

        public SimRig Rig { get; }
        public IBlockBackend Backend { get; }
        public BlockDevice<Mem> Device { get; }
        public BlkDriver Driver { get; } = null!;
        public Span<byte> Disk => ((MemoryBackend)Backend).Data;

        public void Dispose()
        {
            Driver?.Dispose();
            Rig.AssertNoLeaks();
            Rig.Dispose();
        }
    }

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>
    /// Sends one hand-built request through the generic driver core (not BlkDriver, which only builds valid ones):
    /// header, optional device-readable payload, optional device-writable payload, status byte.
    /// </summary>
    private static (BlkStatus Status, byte[] In) Raw(SimRig rig, VirtioDriverDevice dev, uint type, ulong sector, byte[] payloadOut, int inBytes = 0)
    {
        var p = rig.Platform;
        ulong hdr = p.Allocator.Allocate(BlkSpec.HeaderSize + 1);
        var hb = new byte[BlkSpec.HeaderSize + 1];
        new BlkHeader(type, sector).Write(hb);
        hb[^1] = 0xFF;
        p.Cpu.Write(hdr, hb);
        ulong outGpa = payloadOut.Length > 0 ? p.Allocator.Allocate((ulong)payloadOut.Length) : 0;
        if (outGpa != 0) p.Cpu.Write(outGpa, payloadOut);
        ulong inGpa = inBytes > 0 ? p.Allocator.Allocate((ulong)inBytes) : 0;
        try
        {
            var readable = new List<BufferSegment> { new(hdr, BlkSpec.HeaderSize) };
            if (outGpa != 0) readable.Add(new(outGpa, (uint)payloadOut.Length));
            var writable = new List<BufferSegment>();
            if (inGpa != 0) writable.Add(new(inGpa, (uint)inBytes));
            writable.Add(new(hdr + BlkSpec.HeaderSize, 1));
            var q = dev.Queue(0);
            var token = new object();
            Assert.Equal(QueueStatus.Ok, q.Add(readable.ToArray(), writable.ToArray(), token, out _));
            dev.Kick(0);
            object? got = null;
            Assert.True(dev.WaitUntil(() => got is not null || q.GetUsed(out got, out _) == QueueStatus.Ok));
            Assert.Same(token, got);
            var sb = new byte[1];
            p.Cpu.Read(hdr + BlkSpec.HeaderSize, sb);
            Assert.NotEqual(0xFF, sb[0]);
            var inData = new byte[inBytes];
            if (inGpa != 0) p.Cpu.Read(inGpa, inData);
            return ((BlkStatus)sb[0], inData);
        }
        finally
        {
            p.Allocator.Free(hdr, BlkSpec.HeaderSize + 1);
            if (outGpa != 0) p.Allocator.Free(outGpa, (ulong)payloadOut.Length);
            if (inGpa != 0) p.Allocator.Free(inGpa, (ulong)inBytes);
        }
    }

    private static byte[] Ranges(params (ulong Sector, uint Sectors, uint Flags)[] segs)
    {
        var b = new byte[segs.Length * BlkSpec.DiscardSegmentSize];
        for (int i = 0; i < segs.Length; i++)
            new BlkRangeSegment(segs[i].Sector, segs[i].Sectors, segs[i].Flags).Write(b.AsSpan(i * BlkSpec.DiscardSegmentSize));
        return b;
    }

    /// <summary>A probed generic device for hand-built requests, removed (and leak-checked) at the end.</summary>
    private static void WithRaw(Setup s, Action<VirtioDriverDevice> body)
    {
        var dev = VirtioDriverDevice.Probe(s.Rig.DriverTransport(), s.Rig.Environment(), BlkDriver.DriverFeatures, 1);
        try { body(dev); }
        finally { dev.Remove(); }
    }

    [Fact]
    public void FlushReachesTheBackend()
    {
        var disk = new MemoryBackend(1 << 20);
        using var s = new Setup(disk);
        Assert.Equal(0, disk.Flushes);
        Assert.Equal(BlkStatus.Ok, s.Driver.Flush());
        Assert.Equal(BlkStatus.Ok, s.Driver.Flush());
        Assert.Equal(2, disk.Flushes);
        Assert.Equal(2, s.Device.Stats.Flushes);
    }

    [Theory]
    [InlineData("disk-42", "disk-42")]
    [InlineData("serial-number-longer-than-twenty", "serial-number-longer")]
    public void GetIdReturnsTheSerialTruncatedToTwentyBytes(string serial, string expected)
    {
        using var s = new Setup(options: new BlockDeviceOptions { Serial = serial });
        Assert.Equal(expected, s.Driver.GetId());
    }

    [Fact]
    public void DiscardZeroesExactlyTheRange()
    {
        using var s = new Setup();
        var data = Random(16 * 512, 1);
        Assert.Equal(BlkStatus.Ok, s.Driver.Write(0, data));
        Assert.Equal(BlkStatus.Ok, s.Driver.Range(BlkRequestType.Discard, 4, 4));
        var back = new byte[data.Length];
        Assert.Equal(BlkStatus.Ok, s.Driver.Read(0, back));
        Assert.Equal(data[..(4 * 512)], back[..(4 * 512)]);
        Assert.True(back.AsSpan(4 * 512, 4 * 512).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(data[(8 * 512)..], back[(8 * 512)..]);
        Assert.Equal(1, s.Device.Stats.Discards);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WriteZeroesWithAndWithoutUnmap(bool unmap)
    {
        using var s = new Setup();
        var data = Random(8 * 512, 2);
        Assert.Equal(BlkStatus.Ok, s.Driver.Write(100, data));
        Assert.Equal(BlkStatus.Ok, s.Driver.Range(BlkRequestType.WriteZeroes, 101, 2, unmap));
        Assert.True(s.Disk.Slice(101 * 512, 1024).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(data[..512], s.Disk.Slice(100 * 512, 512).ToArray());
        Assert.Equal(data[(3 * 512)..], s.Disk.Slice(103 * 512, 5 * 512).ToArray());
        Assert.Equal(1, s.Device.Stats.WriteZeroes);
    }

    [Fact]
    public void HandBuiltRequestsOfUnknownTypeOrBadFlagsAreUnsupported()
    {
        using var s = new Setup(options: new BlockDeviceOptions { MaxDiscardSeg = 2 }, probe: false);
        var pattern = Random(64 * 512, 3);
        pattern.CopyTo(s.Disk);
        WithRaw(s, dev =>
        {
            Assert.Equal(BlkStatus.Unsupp, Raw(s.Rig, dev, 99, 0, [], 512).Status);
            Assert.Equal(BlkStatus.Unsupp, Raw(s.Rig, dev, BlkRequestType.GetLifetime, 0, [], 512).Status);
            // DISCARD takes no flags; WRITE_ZEROES only UNMAP.
            Assert.Equal(BlkStatus.Unsupp, Raw(s.Rig, dev, BlkRequestType.Discard, 0, Ranges((0, 8, 1))).Status);
            Assert.Equal(BlkStatus.Unsupp, Raw(s.Rig, dev, BlkRequestType.WriteZeroes, 0, Ranges((0, 8, 2))).Status);
            // More segments than max_discard_seg, even if each is fine; and a bad segment after a good one.
            Assert.Equal(BlkStatus.Unsupp, Raw(s.Rig, dev, BlkRequestType.Discard, 0, Ranges((0, 1, 0), (2, 1, 0), (4, 1, 0))).Status);
            Assert.Equal(BlkStatus.Unsupp, Raw(s.Rig, dev, BlkRequestType.Discard, 0, Ranges((0, 1, 0), (2, 1, 4))).Status);
            Assert.Equal(BlkStatus.IoErr, Raw(s.Rig, dev, BlkRequestType.Discard, 0, Ranges((0, 1, 0), (4096, 1, 0))).Status);
            Assert.Equal(pattern, s.Disk[..pattern.Length].ToArray());
            // A well-formed two-segment discard goes through.
            Assert.Equal(BlkStatus.Ok, Raw(s.Rig, dev, BlkRequestType.Discard, 0, Ranges((0, 1, 0), (2, 1, 0))).Status);
            Assert.True(s.Disk[..512].IndexOfAnyExcept((byte)0) < 0);
            Assert.True(s.Disk.Slice(1024, 512).IndexOfAnyExcept((byte)0) < 0);
            Assert.Equal(pattern.AsSpan(512, 512).ToArray(), s.Disk.Slice(512, 512).ToArray());
            // A sector so large that sector + length overflows is out of range, not a wrap to the start of the disk.
            Assert.Equal(BlkStatus.IoErr, Raw(s.Rig, dev, BlkRequestType.Out, ulong.MaxValue, new byte[512]).Status);
            Assert.Equal(BlkStatus.IoErr, Raw(s.Rig, dev, BlkRequestType.In, ulong.MaxValue >> 9, [], 512).Status);
            // A partial sector is refused.
            Assert.Equal(BlkStatus.IoErr, Raw(s.Rig, dev, BlkRequestType.Out, 0, new byte[100]).Status);
        });
        Assert.Equal(2, s.Device.Stats.Unsupported);
        Assert.Equal(pattern.AsSpan(512, 512).ToArray(), s.Disk.Slice(512, 512).ToArray());
        Assert.True(s.Disk[..100].IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void OutOfRangeAndCrossingTheEndFailWithoutTouchingTheDisk()
    {
        using var s = new Setup();
        var pattern = Random(s.Disk.Length, 4);
        pattern.CopyTo(s.Disk);
        ulong cap = s.Driver.CapacitySectors;
        Assert.Equal(2048UL, cap);
        Assert.Equal(BlkStatus.IoErr, s.Driver.Write(cap, new byte[512]));
        Assert.Equal(BlkStatus.IoErr, s.Driver.Write(cap - 1, new byte[1024]));   // crosses the end
        Assert.Equal(BlkStatus.IoErr, s.Driver.Write(cap + 1000, new byte[512]));
        Assert.Equal(BlkStatus.IoErr, s.Driver.Range(BlkRequestType.WriteZeroes, cap - 1, 2));
        Assert.Equal(BlkStatus.IoErr, s.Driver.Range(BlkRequestType.Discard, cap, 1));
        Assert.Equal(pattern, s.Disk.ToArray());
        var buf = new byte[1024];
        Assert.Equal(BlkStatus.IoErr, s.Driver.Read(cap - 1, buf));
        Assert.True(s.Device.Stats.OutOfRange >= 6);
        // The last sector itself is fine.
        Assert.Equal(BlkStatus.Ok, s.Driver.Read(cap - 1, buf.AsSpan(0, 512)));
        Assert.Equal(pattern[^512..], buf[..512]);
    }

    [Fact]
    public void ReadOnlyDiskRefusesEveryWrite()
    {
        var disk = new MemoryBackend(1 << 20, readOnly: true);
        var pattern = Random(disk.Data.Length, 5);
        pattern.CopyTo(disk.Data);
        using var s = new Setup(disk);
        Assert.True(s.Driver.ReadOnly);
        Assert.Equal(BlkStatus.IoErr, s.Driver.Write(0, new byte[4096]));
        Assert.Equal(BlkStatus.IoErr, s.Driver.Range(BlkRequestType.Discard, 0, 8));
        Assert.Equal(BlkStatus.IoErr, s.Driver.Range(BlkRequestType.WriteZeroes, 8, 8, unmap: true));
        Assert.Equal(pattern, disk.Data.ToArray());
        Assert.Equal(3, s.Device.Stats.ReadOnlyRejects);
        var back = new byte[4096];
        Assert.Equal(BlkStatus.Ok, s.Driver.Read(0, back));
        Assert.Equal(pattern[..4096], back);
    }

    [Fact]
    public void FileBackendRoundTrip()
    {
        string path = Path.Combine(Path.GetTempPath(), $"virtio-sharp-{Guid.NewGuid():N}.img");
        try
        {
            File.WriteAllBytes(path, new byte[(1 << 20) + 100]);   // a tail shorter than a sector is not part of the disk
            var data = Random(64 * 1024, 6);
            using (var backend = new FileBackend(path))
            {
                using var s = new Setup(backend);
                Assert.Equal(2048UL, s.Driver.CapacitySectors);
                Assert.Equal(BlkStatus.Ok, s.Driver.Write(100, data));
                Assert.Equal(BlkStatus.Ok, s.Driver.Flush());
                var back = new byte[data.Length];
                Assert.Equal(BlkStatus.Ok, s.Driver.Read(100, back));
                Assert.Equal(data, back);
                Assert.Equal(BlkStatus.Ok, s.Driver.Range(BlkRequestType.WriteZeroes, 100, 1));
                Assert.Equal(BlkStatus.IoErr, s.Driver.Write(2048, new byte[512]));
            }
            var file = File.ReadAllBytes(path);
            Assert.Equal((1 << 20) + 100, file.Length);
            Assert.True(file.AsSpan(100 * 512, 512).IndexOfAnyExcept((byte)0) < 0);
            Assert.Equal(data[512..], file.AsSpan(101 * 512, data.Length - 512).ToArray());
            Assert.True(file.AsSpan(0, 100 * 512).IndexOfAnyExcept((byte)0) < 0);

            // Read-only opening of the same image: reads work, writes are refused and the file is unchanged.
            using (var ro = new FileBackend(path, readOnly: true))
            {
                using var s = new Setup(ro);
                var back = new byte[data.Length - 512];
                Assert.Equal(BlkStatus.Ok, s.Driver.Read(101, back));
                Assert.Equal(data[512..], back);
                Assert.Equal(BlkStatus.IoErr, s.Driver.Write(0, new byte[512]));
            }
            Assert.Equal(file, File.ReadAllBytes(path));
        }
        finally { File.Delete(path); }
    }

    private static ushort UsedIdx(SimRig rig, DriverQueue q)
    {
        var b = new byte[2];
        ulong gpa = q.RingMemory.Gpa + (q.DeviceLayout.UsedIdxAddr - q.RingMemory.Bus);
        Assert.Equal(MemStatus.Ok, rig.Platform.Ram.Read(gpa, b));
        return BitConverter.ToUInt16(b);
    }

    [Theory]
    [InlineData(SimTransport.Mmio)]
    [InlineData(SimTransport.Pci)]
    public void MultiqueueSpreadsRequestsOverEveryQueue(SimTransport transport)
    {
        using var s = new Setup(options: new BlockDeviceOptions { NumQueues = 4 }, transport: transport);
        Assert.Equal(4, s.Driver.NumQueues);
        Assert.Equal(4, s.Rig.Slot!.Core.QueueCount);
        var p = s.Rig.Platform;
        const int n = 32, len = 4096;
        var bufs = new ulong[n];
        var ops = new BlkOp[n];
        for (int i = 0; i < n; i++)
        {
            bufs[i] = p.Allocator.Allocate(len);
            p.Cpu.Write(bufs[i], Random(len, 100 + i));
            ops[i] = s.Driver.Submit(BlkRequestType.Out, (ulong)(i * 8), [new BufferSegment(bufs[i], len)]);
        }
        Assert.True(s.Driver.WaitAll());
        Assert.All(ops, o => Assert.Equal(BlkStatus.Ok, o.Status));
        for (int q = 0; q < 4; q++) Assert.Equal(n / 4, UsedIdx(s.Rig, s.Driver.Device.Queue(q)));
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(Random(len, 100 + i), s.Disk.Slice(i * len, len).ToArray());
            p.Allocator.Free(bufs[i], len);
        }
    }

    /// <summary>Request i moves bytes [i·len, (i+1)·len) of <paramref name="area"/> to or from its sector (default i·8).</summary>
    private static List<BlkOp> SubmitPages(Setup s, uint type, ulong area, int n, int len, Func<int, ulong>? sector = null) =>
        Enumerable.Range(0, n)
            .Select(i => s.Driver.Submit(type, sector?.Invoke(i) ?? (ulong)(i * 8), [new BufferSegment(area + (ulong)(i * len), (uint)len)]))
            .ToList();

    /// <summary>
    /// The same device and driver code over split and packed rings, with and without IN_ORDER: with IN_ORDER a drain
    /// is returned as one used element, and a short request (an I/O error writes only the status byte) closes the
    /// batch so the driver still gets every request's own status and length.
    /// </summary>
    [Theory]
    [InlineData(SimTransport.Mmio, false, false)]
    [InlineData(SimTransport.Mmio, true, false)]
    [InlineData(SimTransport.Mmio, false, true)]
    [InlineData(SimTransport.Mmio, true, true)]
    [InlineData(SimTransport.Pci, true, true)]
    [InlineData(SimTransport.Pci, false, true)]
    public void RingLayoutsAndInOrderBatchesCarryTheSameRequests(SimTransport transport, bool packed, bool inOrder)
    {
        using var s = new Setup(options: new BlockDeviceOptions { OfferPacked = packed, OfferInOrder = inOrder }, mode: DmaMode.IommuStrict, transport: transport);
        var q = s.Driver.Device.Queue(0);
        Assert.Equal(packed, q.IsPacked);
        Assert.Equal(inOrder, q.Options.InOrder);
        s.Rig.Machine.Deferred = true;
        var p = s.Rig.Platform;
        const int n = 40, len = 4096;
        ulong area = p.Allocator.Allocate(n * len);
        var expected = Random(n * len, 11);
        p.Cpu.Write(area, expected);
        var writes = SubmitPages(s, BlkRequestType.Out, area, n, len);
        Assert.True(s.Driver.WaitAll());
        Assert.All(writes, o => Assert.Equal(BlkStatus.Ok, o.Status));
        Assert.Equal(expected, s.Disk[..(n * len)].ToArray());
        long usedBefore = s.Device.Stats.UsedElements;
        Assert.Equal(inOrder ? 1 : n, usedBefore);   // deferred: the device drained all 40 in one go

        // Reads, with one past the end of the disk in the middle: it fails alone.
        p.Cpu.Write(area, new byte[n * len]);
        ulong capacity = s.Driver.CapacitySectors;
        var reads = SubmitPages(s, BlkRequestType.In, area, n, len, i => i == 17 ? capacity : (ulong)(i * 8));
        Assert.True(s.Driver.WaitAll());
        for (int i = 0; i < n; i++) Assert.Equal(i == 17 ? BlkStatus.IoErr : BlkStatus.Ok, reads[i].Status);
        var back = new byte[n * len];
        p.Cpu.Read(area, back);
        for (int i = 0; i < n; i++)
            if (i != 17) Assert.Equal(expected.AsSpan(i * len, len).ToArray(), back.AsSpan(i * len, len).ToArray());
        // IN_ORDER: requests 0-16 and the short 17 close one batch, 18-39 make the next.
        Assert.Equal(inOrder ? 2 : n, s.Device.Stats.UsedElements - usedBefore);
        Assert.Null(s.Rig.Slot!.Core.NeedsResetReason);
        p.Allocator.Free(area, n * len);
    }

    [Fact]
    public void HundredRequestsInFlightBeforeAnyCompletes()
    {
        using var s = new Setup(options: new BlockDeviceOptions(), mode: DmaMode.IommuStrict);
        s.Rig.Machine.Deferred = true;
        var p = s.Rig.Platform;
        const int n = 100, len = 4096;
        ulong area = p.Allocator.Allocate(n * len);
        var expected = Random(n * len, 7);
        p.Cpu.Write(area, expected);
        var writes = SubmitPages(s, BlkRequestType.Out, area, n, len);
        Assert.Equal(n, s.Driver.InFlight);
        Assert.All(writes, o => Assert.False(o.IsCompleted));
        Assert.True(s.Disk.IndexOfAnyExcept((byte)0) < 0);
        Assert.True(s.Driver.WaitAll());
        Assert.All(writes, o => Assert.Equal(BlkStatus.Ok, o.Status));
        Assert.Equal(expected, s.Disk[..(n * len)].ToArray());

        p.Cpu.Write(area, new byte[n * len]);
        var reads = SubmitPages(s, BlkRequestType.In, area, n, len);
        Assert.Equal(n, s.Driver.InFlight);
        Assert.True(s.Driver.WaitAll());
        Assert.All(reads, o => Assert.Equal(BlkStatus.Ok, o.Status));
        var back = new byte[n * len];
        p.Cpu.Read(area, back);
        Assert.Equal(expected, back);
        p.Allocator.Free(area, n * len);
    }

    [Fact]
    public void WritesAreSplitToSizeMaxAndSegMax()
    {
        using var s = new Setup(options: new BlockDeviceOptions { SizeMax = 4096, SegMax = 4 });
        Assert.Equal(4096u, s.Driver.SizeMax);
        Assert.Equal(4u, s.Driver.SegMax);
        var p = s.Rig.Platform;
        var data = Random(64 * 1024, 8);
        long before = s.Driver.RequestsSubmitted;
        Assert.Equal(BlkStatus.Ok, s.Driver.Write(16, data));
        Assert.Equal(4, s.Driver.RequestsSubmitted - before);   // 16 pieces of 4 KiB, 4 per request
        Assert.Equal(data, s.Disk.Slice(16 * 512, data.Length).ToArray());

        // Three separate 12 KiB buffers: 9 pieces, at most 4 per request.
        ulong a = p.Allocator.Allocate(3 * 16384);
        var segs = new[] { new BufferSegment(a, 12288), new BufferSegment(a + 16384, 12288), new BufferSegment(a + 32768, 12288) };
        var op = s.Driver.Submit(BlkRequestType.In, 16, segs);
        Assert.Equal(3, op.Parts);
        Assert.True(s.Driver.Wait(op));
        Assert.Equal(BlkStatus.Ok, op.Status);
        var got = new byte[36864];
        for (int i = 0; i < 3; i++) p.Cpu.Read(segs[i].Gpa, got.AsSpan(i * 12288, 12288));
        Assert.Equal(data[..36864], got);
        p.Allocator.Free(a, 3 * 16384);
    }

    [Fact]
    public void MegabyteWriteThroughASmallBouncePool()
    {
        using var s = new Setup(new MemoryBackend(2 << 20), mode: DmaMode.Bounce, bouncePool: 64 * 1024);
        var pool = s.Rig.Platform.BouncePool!;
        Assert.Equal(32, pool.Slots);
        Assert.True(s.Driver.MaxPiece <= s.Driver.Device.Dma.MaxMappingSize);
        var data = Random(1 << 20, 9);
        long before = s.Driver.RequestsSubmitted;
        Assert.Equal(BlkStatus.Ok, s.Driver.Write(0, data));
        long requests = s.Driver.RequestsSubmitted - before;
        Assert.True(requests >= 16, $"{requests} requests cannot have fit through a 64 KiB pool");
        Assert.Equal(data, s.Disk[..data.Length].ToArray());
        var back = new byte[data.Length];
        Assert.Equal(BlkStatus.Ok, s.Driver.Read(0, back));
        Assert.Equal(data, back);
        Assert.Equal(0, pool.SlotsInUse);
        Assert.Equal(0, s.Rig.Platform.Protection!.Violations);
    }
}
