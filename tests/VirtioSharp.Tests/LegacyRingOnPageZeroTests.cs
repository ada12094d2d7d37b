using VirtioSharp.Devices;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

public class LegacyRingOnPageZeroTests
{
    [Theory]
    [InlineData(SimTransport.MmioLegacy)]
    [InlineData(SimTransport.PciLegacy)]
    public void LegacyQueueOnPageZeroIsRefusedNotLeftToHang(SimTransport transport)
    {
        // A machine whose allocator hands out page 0 first (no bounce pool took it): the ring lands at GPA 0, which a
        // legacy device reads as "disable the queue".
        using var m = new SimMachine(new SimPlatformOptions { RamSize = 4UL << 20, BouncePoolSize = 0 });
        var dev = new EntropyDevice<DeviceMemory<TranslatorRef, PortRef>>(legacyOnly: true);
        var slot = transport == SimTransport.MmioLegacy ? m.AddMmio(dev, "rng", legacy: true) : m.AddPci(dev, "rng", Platform.Transports.PciMode.Legacy);
        var e = Assert.Throws<VirtioProbeException>(() => EntropyDriver.Probe(slot.DriverTransport(), slot.Environment()));
        Assert.Contains("page 0", e.Message);
        Assert.True(slot.Core.Status.HasFlag(DeviceStatus.Failed));
        Assert.Equal(0, m.Platform.Allocator.UsedPages);
    }
}
