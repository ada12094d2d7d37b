using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Tests;

public class BlkSmokeTests
{
    [Theory]
    [InlineData("mmio")]
    [InlineData("mmio-legacy")]
    [InlineData("pci")]
    [InlineData("pci-legacy")]
    [InlineData("pci-transitional-legacy")]
    public void WriteThenReadBack(string transport)
    {
        using var m = new SimMachine(new SimPlatformOptions());
        var disk = new MemoryBackend(1 << 20);
        bool legacyDevice = transport is "mmio-legacy" or "pci-legacy";
        var dev = new BlockDevice<DeviceMemory<TranslatorRef, PortRef>>(disk, new BlockDeviceOptions { LegacyOnly = legacyDevice });
        var slot = transport switch
        {
            "mmio" => m.AddMmio(dev, "blk"),
            "mmio-legacy" => m.AddMmio(dev, "blk", legacy: true),
            "pci" => m.AddPci(dev, "blk"),
            "pci-legacy" => m.AddPci(dev, "blk", PciMode.Legacy),
            _ => m.AddPci(dev, "blk", PciMode.Transitional),
        };
        using var drv = BlkDriver.Probe(slot.DriverTransport(forceLegacy: transport.EndsWith("legacy")), slot.Environment());
        Assert.Equal(2048UL, drv.CapacitySectors);
        var data = new byte[8192];
        new Random(3).NextBytes(data);
        Assert.Equal(BlkStatus.Ok, drv.Write(10, data));
        Assert.Equal(data, disk.Data.Slice(10 * 512, 8192).ToArray());
        var back = new byte[8192];
        Assert.Equal(BlkStatus.Ok, drv.Read(10, back));
        Assert.Equal(data, back);
        Assert.Equal(BlkStatus.IoErr, drv.Read(2047, new byte[1024]));
        Assert.Equal("virtio-sharp", drv.GetId());
    }
}
