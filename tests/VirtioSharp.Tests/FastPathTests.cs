using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;

namespace VirtioSharp.Tests;

/// <summary>The single-region / single-translation fast paths keep the validation of the general paths.</summary>
public class FastPathTests
{
    [Fact]
    public void WriteRunningOffARegionIntoAHoleWritesNothing()
    {
        using var ram = new GuestMemory(new GuestRegion(0, 4096), new GuestRegion(0x10000, 4096));
        var dev = DeviceMemory.Identity(ram);
        Assert.Equal(MemStatus.Unmapped, dev.Write(4096 - 8, Enumerable.Repeat((byte)0xff, 16).ToArray()));
        Span<byte> back = stackalloc byte[8];
        Assert.Equal(MemStatus.Ok, ram.Read(4096 - 8, back));
        Assert.All(back.ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(MemStatus.Unmapped, ram.Write(0x10000 + 4096 - 4, new byte[8]));
        Assert.Equal(MemStatus.Ok, dev.Read(0x10000, new byte[16]));          // second region: slow path
        Assert.Equal(MemStatus.Unmapped, dev.Read(0x8000, new byte[2]));
    }

    [Fact]
    public void IommuRefusesWritesToReadOnlyMappingsAndUnmappedIovas()
    {
        using var sim = new SimPlatform(new SimPlatformOptions { RamSize = 1 << 20, HasIommu = true, BouncePoolSize = 0 });
        var d = sim.Attach("t", behindIommu: true);
        var ops = new IommuDmaOps(sim, d.Domain!);
        var mem = DeviceMemory.Translated(d.Domain!, sim.Ram);
        ulong buf = sim.Allocator.Allocate(4096);
        Assert.Equal(DmaStatus.Ok, ops.Map(buf, 64, DmaDirection.ToDevice, out var m));
        Assert.Equal(MemStatus.Ok, mem.Check(m.Bus, 64, Access.Read));
        Assert.Equal(MemStatus.PermissionFault, mem.Write(m.Bus, new byte[] { 1, 2, 3, 4 }));
        Span<byte> b = stackalloc byte[4];
        sim.Ram.Read(buf, b);
        Assert.All(b.ToArray(), x => Assert.Equal(0, x));
        ops.Unmap(m);
        Assert.Equal(MemStatus.TranslationFault, mem.Check(m.Bus, 64, Access.Read));
        Assert.Equal(MemStatus.Ok, mem.Read(m.Bus, Span<byte>.Empty));       // empty access: nothing translated
    }

    [Fact]
    public void DeviceStillRejectsAHeadOutOfRangeAndADescriptorOutsideRam()
    {
        var plat = PlainDmaPlatform.Create(1 << 20);
        var opts = new QueueOptions();
        var driver = new DriverQueue(new DirectDmaOps(plat), plat.Ram, 16, opts);
        ulong buf = plat.Allocator.Allocate(4096);
        var layout = driver.DeviceLayout;

        var device = new DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>>(DeviceMemory.Identity(plat.Ram), layout, opts);
        Assert.Equal(QueueStatus.Ok, driver.Add([new BufferSegment(buf, 64)], [], new object(), out _));
        plat.Ram.Write(layout.AvailRingAddr(0), BitConverter.GetBytes((ushort)16));
        Assert.Equal(QueueStatus.Broken, device.Pop(out _));
        Assert.Equal(QueueError.HeadOutOfRange, device.Error);

        device = new(DeviceMemory.Identity(plat.Ram), layout, opts);
        plat.Ram.Write(layout.AvailRingAddr(0), BitConverter.GetBytes((ushort)0));
        plat.Ram.Write(layout.DescAddr(0), BitConverter.GetBytes(ulong.MaxValue - 8));   // addr + len wraps
        Assert.Equal(QueueStatus.Broken, device.Pop(out _));
        Assert.Equal(QueueError.AddressRefused, device.Error);
        Assert.Contains("head 0", device.ErrorDetail);
    }
}
