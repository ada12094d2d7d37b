using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>
/// Probe, I/O, remove, again and again, in every DMA mode on both transports: guest pages, IOMMU PTEs, IOVA space and
/// bounce slots all return to where they started. Removal with requests still in flight fails them and frees
/// everything too.
/// </summary>
public class ProbeRemoveLeakTests
{
    private const int Cycles = 20;

    public static TheoryData<SimTransport, DmaMode> Cases()
    {
        var d = new TheoryData<SimTransport, DmaMode>();
        foreach (var t in new[] { SimTransport.Mmio, SimTransport.Pci })
            foreach (var m in new[] { DmaMode.Direct, DmaMode.IommuStrict, DmaMode.IommuLazy, DmaMode.Bounce, DmaMode.NonCoherent })
                d.Add(t, m);
        return d;
    }

    private static BlockDevice<Mem> Blk(SimRig rig, MemoryBackend disk) =>
        new(disk, new BlockDeviceOptions { OfferAccessPlatform = rig.AccessPlatform, QueueSize = 64, SizeMax = 8192, SegMax = 8 });

    [Theory, MemberData(nameof(Cases))]
    public void RepeatedProbeIoRemoveLeaksNothing(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        var disk = new MemoryBackend(1 << 20);
        rig.Add(Blk(rig, disk), transport);
        var data = new byte[32 * 1024];
        var back = new byte[data.Length];
        for (int cycle = 0; cycle < Cycles; cycle++)
        {
            var drv = BlkDriver.Probe(rig.DriverTransport(), rig.Environment());
            Assert.Equal(rig.ExpectedOps, drv.Device.Dma.Kind);
            Assert.True(rig.Platform.Allocator.UsedPages > rig.BaselinePages);   // rings and request slots
            new Random(cycle).NextBytes(data);
            ulong sector = (ulong)(cycle * 64);
            Assert.Equal(BlkStatus.Ok, drv.Write(sector, data));
            Assert.Equal(BlkStatus.Ok, drv.Read(sector, back));
            Assert.Equal(data, back);
            Assert.Equal(data, disk.Data.Slice((int)sector * 512, data.Length).ToArray());
            Assert.Equal(BlkStatus.Ok, drv.Flush());
            var ops = drv.Device.Dma;
            drv.Dispose();
            Assert.Equal(0, ops.Stats.Outstanding);
            Assert.Equal(0, SimRig.IovaPagesInUse(ops));
            rig.AssertNoLeaks($"cycle {cycle}");
        }
        Assert.Equal(0, rig.Platform.Iommu?.FaultCount ?? 0);
        Assert.Equal(0, rig.Platform.Protection?.Violations ?? 0);
    }

    [Theory, MemberData(nameof(Cases))]
    public void RemovingWithRequestsInFlightFailsThemAndLeaksNothing(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        var disk = new MemoryBackend(1 << 20);
        rig.Add(Blk(rig, disk), transport);
        rig.Machine.Deferred = true;
        // A 16-entry queue: 24 requests fill the ring and leave the rest in the driver's backlog.
        var drv = BlkDriver.Probe(rig.DriverTransport(), rig.Environment(), maxQueueSize: 16);
        var ops = drv.Device.Dma;
        const int n = 24, len = 4096;
        var buffers = new ulong[n];
        var pending = new List<BlkOp>();
        for (int i = 0; i < n; i++)
        {
            buffers[i] = rig.Platform.Allocator.Allocate(len);
            rig.Platform.Cpu.Write(buffers[i], Enumerable.Repeat((byte)(i + 1), len).ToArray());
            pending.Add(drv.Submit(BlkRequestType.Out, (ulong)(i * 8), [new BufferSegment(buffers[i], len)]));
        }
        Assert.All(pending, op => Assert.False(op.IsCompleted));
        Assert.Equal(16, drv.InFlight);
        Assert.True(ops.Stats.Outstanding > 0);

        drv.Dispose();
        Assert.All(pending, op => Assert.Equal(BlkStatus.IoErr, op.Status));
        // The device was reset before the buffers were unmapped: its queued work never runs.
        Assert.False(rig.Machine.Poll());
        Assert.True(disk.Data.IndexOfAnyExcept((byte)0) < 0, "the removed device wrote to the disk");
        Assert.Equal(0, ops.Stats.Outstanding);
        Assert.Equal(0, SimRig.IovaPagesInUse(ops));
        foreach (var b in buffers) rig.Platform.Allocator.Free(b, len);
        rig.AssertNoLeaks();

        // The slot is usable again: a fresh probe works.
        rig.Machine.Deferred = false;
        using (var again = BlkDriver.Probe(rig.DriverTransport(), rig.Environment()))
            Assert.Equal(BlkStatus.Ok, again.Write(0, new byte[512]));
        rig.AssertNoLeaks("after the second probe");
    }
}
