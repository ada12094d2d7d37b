using VirtioSharp.Devices;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>virtio-rng and virtio-console through every transport variant, modern and legacy, and the DMA modes.</summary>
public class RngConsoleTests
{
    public static TheoryData<SimTransport> Transports() => new(Enum.GetValues<SimTransport>());

    public static TheoryData<SimTransport, DmaMode> ModernModes()
    {
        var d = new TheoryData<SimTransport, DmaMode>();
        foreach (var t in new[] { SimTransport.Mmio, SimTransport.Pci })
            foreach (var m in new[] { DmaMode.IommuStrict, DmaMode.Bounce, DmaMode.NonCoherent })
                d.Add(t, m);
        return d;
    }

    /// <summary>An entropy source that hands out a counting sequence, so the bytes the driver gets can be checked.</summary>
    private sealed class CountingSource(int maxPerCall = int.MaxValue)
    {
        private byte _next = 1;
        public int Calls { get; private set; }
        public int Fill(Memory<byte> m)
        {
            Calls++;
            int n = Math.Min(m.Length, maxPerCall);
            var s = m.Span;
            for (int i = 0; i < n; i++) s[i] = _next++;
            return n;
        }
    }

    private static byte[] Counting(int from, int n) => Enumerable.Range(from, n).Select(i => (byte)i).ToArray();

    [Theory, MemberData(nameof(Transports))]
    public void RngDeliversTheDevicesBytes(SimTransport transport)
    {
        using var rig = new SimRig(DmaMode.Direct);
        var src = new CountingSource();
        var dev = new EntropyDevice<Mem>(legacyOnly: SimRig.IsLegacy(transport), source: src.Fill);
        rig.Add(dev, transport);
        using (var drv = EntropyDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            Assert.Equal(SimRig.IsLegacy(transport), drv.Device.Transport.IsLegacy);
            Assert.Equal(SimRig.IsLegacy(transport), !drv.Device.Has(VirtioFeature.Version1));
            var a = new byte[100];
            Assert.Equal(100, drv.Read(a));
            Assert.Equal(Counting(1, 100), a);
            var b = new byte[5000];   // more than the device's 4 KiB scratch: filled in two goes
            Assert.Equal(5000, drv.Read(b));
            Assert.Equal(Counting(101, 5000), b);
            Assert.Equal(5100, dev.BytesServed);
        }
        rig.AssertNoLeaks();
    }

    [Fact]
    public void RngReturnsOnlyWhatTheDeviceGave()
    {
        using var rig = new SimRig(DmaMode.Direct);
        var src = new CountingSource(maxPerCall: 0);   // the device has no entropy at all
        rig.Add(new EntropyDevice<Mem>(source: src.Fill), SimTransport.Mmio);
        using (var drv = EntropyDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            var buf = Enumerable.Repeat((byte)0xEE, 64).ToArray();
            Assert.Equal(0, drv.Read(buf));
            Assert.True(src.Calls > 0);
        }
        rig.AssertNoLeaks();
    }

    [Theory, MemberData(nameof(ModernModes))]
    public void RngInEveryDmaMode(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        rig.Add(new EntropyDevice<Mem>(source: new CountingSource().Fill, offerAccessPlatform: true), transport);
        using (var drv = EntropyDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            Assert.Equal(rig.ExpectedOps, drv.Device.Dma.Kind);
            var a = new byte[3000];
            Assert.Equal(3000, drv.Read(a));
            Assert.Equal(Counting(1, 3000), a);
        }
        rig.AssertNoLeaks();
        Assert.Equal(0, rig.Platform.Iommu?.FaultCount ?? 0);
    }

    [Theory, MemberData(nameof(Transports))]
    public void ConsoleCarriesBothDirectionsAndItsSize(SimTransport transport)
    {
        using var rig = new SimRig(DmaMode.Direct);
        var dev = new ConsoleDevice<Mem>(legacyOnly: SimRig.IsLegacy(transport), cols: 132, rows: 43);
        rig.Add(dev, transport);
        using (var drv = ConsoleDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            Assert.Equal(SimRig.IsLegacy(transport), drv.Device.Transport.IsLegacy);
            Assert.Equal((ushort)132, drv.Cols);
            Assert.Equal((ushort)43, drv.Rows);
            drv.Write("first line\n"u8);
            drv.Write("second\n"u8);
            Assert.Equal("first line\nsecond\n"u8.ToArray(), dev.Output);
            Assert.Empty(drv.ReadAvailable());
            dev.Type("ls -l\n"u8);
            Assert.Equal("ls -l\n"u8.ToArray(), drv.ReadAvailable());
            // More than the eight 256-byte receive buffers hold at once: delivered as the driver reposts them.
            var big = Enumerable.Range(0, 3000).Select(i => (byte)('a' + i % 26)).ToArray();
            dev.Type(big);
            var got = new List<byte>();
            for (int i = 0; i < 10 && got.Count < big.Length; i++)
            {
                got.AddRange(drv.ReadAvailable());
                dev.Type([]);   // the host retries delivery as buffers come back
            }
            Assert.Equal(big, got.ToArray());
        }
        rig.AssertNoLeaks();
    }

    [Theory, MemberData(nameof(ModernModes))]
    public void ConsoleInEveryDmaMode(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        var dev = new ConsoleDevice<Mem>(offerAccessPlatform: true);
        rig.Add(dev, transport);
        using (var drv = ConsoleDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            Assert.Equal(rig.ExpectedOps, drv.Device.Dma.Kind);
            drv.Write("out"u8);
            dev.Type("in"u8);
            Assert.Equal("in"u8.ToArray(), drv.ReadAvailable());
            Assert.Equal("out"u8.ToArray(), dev.Output);
        }
        rig.AssertNoLeaks();
        Assert.Equal(0, rig.Platform.Protection?.Violations ?? 0);
    }

    [Fact]
    public void ProbingTheWrongDeviceTypeIsRefused()
    {
        using var rig = new SimRig(DmaMode.Direct);
        rig.Add(new ConsoleDevice<Mem>(), SimTransport.Pci);
        var e = Assert.Throws<VirtioProbeException>(() => EntropyDriver.Probe(rig.DriverTransport(), rig.Environment()));
        Assert.Contains("not an entropy device", e.Message);
        rig.AssertNoLeaks();
    }
}
