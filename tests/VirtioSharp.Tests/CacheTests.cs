using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests;

/// <summary>
/// Cache coherence: ops that do not match the device corrupt data both ways round (missing maintenance, and
/// maintenance that throws away a coherent device's writes); matching ops do not.
/// </summary>
public class CacheTests
{
    private static readonly ulong V1 = VirtioFeature.Bit(VirtioFeature.Version1);
    private static readonly ulong AP = VirtioFeature.Bit(VirtioFeature.AccessPlatform);

    private static RoundTripResult Run(bool deviceCoherent, bool firmwareSaysCoherent) => RoundTrip.Run(new RoundTripSetup
    {
        Name = $"device coherent={deviceCoherent}, firmware says {firmwareSaysCoherent}",
        Platform = new SimPlatformOptions { CpuCache = true },
        DeviceCoherent = deviceCoherent,
        FirmwareSaysCoherent = firmwareSaysCoherent,
        Offered = V1 | AP,
        Chains = 64,
    });

    [Fact]
    public void CoherentOpsOnNonCoherentDeviceCorrupt()
    {
        var r = Run(deviceCoherent: false, firmwareSaysCoherent: true);
        Assert.False(r.Decision.NonCoherentOps);
        Assert.Equal("corrupt", r.Outcome);
        Assert.True(r.Verified < r.Attempted, $"{r.Verified}/{r.Attempted}");
    }

    [Fact]
    public void NonCoherentOpsOnCoherentDeviceCorruptByDiscardingDirtyLines()
    {
        var setup = new RoundTripSetup
        {
            Name = "coherent device, non-coherent ops",
            Platform = new SimPlatformOptions { CpuCache = true },
            DeviceCoherent = true,
            FirmwareSaysCoherent = false,
            Offered = V1 | AP,
            Chains = 64,
        };
        var r = RoundTrip.Run(setup);
        Assert.True(r.Decision.NonCoherentOps);
        Assert.Equal("corrupt", r.Outcome);
        Assert.True(r.Verified < r.Attempted);
        Assert.Contains(r.Evidence, e => e.Contains("dirty lines discarded"));

        // The same mismatch at the ops level: the invalidate before the CPU reads throws the device's data away.
        using var platform = new SimPlatform(new SimPlatformOptions { RamSize = 1UL << 20, CpuCache = true, BouncePoolSize = 0 });
        var dev = platform.Attach("coherent", coherent: true);
        var ops = new NonCoherentDmaOps(new DirectDmaOps(platform), platform);
        ulong gpa = platform.Allocator.Allocate(256);
        platform.Cpu.Write(gpa, new byte[256]);                                 // the driver clears its buffer: cached
        Assert.Equal(DmaStatus.Ok, ops.Map(gpa, 256, DmaDirection.FromDevice, out var m));
        dev.Memory.Write(m.Bus, Enumerable.Repeat((byte)0x5A, 256).ToArray());   // lands in the cached lines (snooped)
        ops.Unmap(m);
        Assert.True(platform.Cache!.DiscardedDirtyLines > 0);
        var seen = new byte[256];
        platform.Cpu.Read(gpa, seen);
        Assert.DoesNotContain((byte)0x5A, seen);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void MatchingOpsAreClean(bool coherent)
    {
        var r = Run(deviceCoherent: coherent, firmwareSaysCoherent: coherent);
        Assert.Equal(!coherent, r.Decision.NonCoherentOps);
        Assert.True(r.Clean, string.Join("\n", r.Evidence));
        Assert.Equal("ok", r.Outcome);
        Assert.Equal(r.Attempted, r.Verified);
    }

    [Fact]
    public void CoherentDeviceWritesReachTheCpuWhetherOrNotTheLinesAreCached()
    {
        using var platform = new SimPlatform(new SimPlatformOptions { RamSize = 1UL << 20, CpuCache = true, BouncePoolSize = 0 });
        var dev = platform.Attach("coherent", coherent: true);
        ulong cached = platform.Allocator.Allocate(128), uncached = platform.Allocator.Allocate(128);
        platform.Cpu.Write(cached, new byte[128]);
        var data = Enumerable.Range(0, 128).Select(i => (byte)(200 - i)).ToArray();
        dev.Memory.Write(cached, data);
        dev.Memory.Write(uncached, data);
        var seen = new byte[128];
        platform.Cpu.Read(cached, seen);
        Assert.Equal(data, seen);
        platform.Cpu.Read(uncached, seen);
        Assert.Equal(data, seen);
        // What the driver's rings rely on: a write to lines the CPU never cached is in RAM itself.
        platform.Ram.Read(uncached, seen);
        Assert.Equal(data, seen);
    }

    [Fact]
    public void NonCoherentDeviceSeesCpuWritesOnlyAfterClean()
    {
        using var platform = new SimPlatform(new SimPlatformOptions { RamSize = 1UL << 20, CpuCache = true, BouncePoolSize = 0 });
        var dev = platform.Attach("dma-engine", coherent: false);
        ulong gpa = platform.Allocator.Allocate(128);
        var data = Enumerable.Range(0, 128).Select(i => (byte)(i + 1)).ToArray();
        platform.Cpu.Write(gpa, data);
        var seen = new byte[128];
        dev.Memory.Read(gpa, seen);
        Assert.Equal(new byte[128], seen);                       // still only in the cache
        Assert.True(platform.Cache!.DirtyLines >= 2);

        var ops = new NonCoherentDmaOps(new DirectDmaOps(platform), platform);
        Assert.Equal(DmaStatus.Ok, ops.Map(gpa, 128, DmaDirection.ToDevice, out var m));
        dev.Memory.Read(m.Bus, seen);
        Assert.Equal(data, seen);
        Assert.Equal(0, platform.Cache.DirtyLines);
        ops.Unmap(m);
        Assert.Equal(1, ops.Stats.CacheCleans);
        Assert.Equal(0, ops.Stats.CacheInvalidates);             // to-device: nothing to invalidate
    }

    [Fact]
    public void NonCoherentOpsMakeDeviceWritesVisibleAfterUnmap()
    {
        using var platform = new SimPlatform(new SimPlatformOptions { RamSize = 1UL << 20, CpuCache = true, BouncePoolSize = 0 });
        var dev = platform.Attach("dma-engine", coherent: false);
        ulong gpa = platform.Allocator.Allocate(128);
        platform.Cpu.Write(gpa, new byte[128]);                  // stale zero lines in the cache
        var ops = new NonCoherentDmaOps(new DirectDmaOps(platform), platform);
        Assert.Equal(DmaStatus.Ok, ops.Map(gpa, 128, DmaDirection.FromDevice, out var m));
        dev.Memory.Write(m.Bus, Enumerable.Repeat((byte)0x77, 128).ToArray());
        var seen = new byte[128];
        platform.Cpu.Read(gpa, seen);
        Assert.Equal(new byte[128], seen);                       // the CPU still hits its stale lines
        ops.Unmap(m);
        platform.Cpu.Read(gpa, seen);
        Assert.Equal(Enumerable.Repeat((byte)0x77, 128).ToArray(), seen);
        Assert.Equal(0, platform.Cache!.DiscardedDirtyLines);
    }
}
