using System.Diagnostics;
using VirtioSharp.Devices.Block;
using VirtioSharp.Dma;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

/// <summary>
/// Bounce-only sharing over real shared memory (issue "DMA API over real shared memory", part 1): the front-end's
/// memory table holds only a window of rings and a bounce pool; its RAM is a memfd the back-end never receives, so the
/// operating system enforces what the simulated ProtectedMemory models. Every buffer is copied through the pool.
/// </summary>
public unsafe class BounceOnlyFrontendTests
{
    private static readonly byte[] Canary = "VirtioSharp private page, never shared"u8.ToArray();

    private static VhostUserFrontendOptions Options => new() { MemorySize = 16 << 20, SharedWindowSize = 2 << 20, BouncePoolSize = 1 << 20 };

    /// <summary>Fills a private page with the canary that must never reach the shared window.</summary>
    private static ulong PlantCanary(VhostUserFrontend fe)
    {
        ulong gpa = fe.Platform.Allocator.Allocate(4096);
        for (int i = 0; i + Canary.Length <= 4096; i += Canary.Length) fe.Memory.Write(gpa + (ulong)i, Canary);
        return gpa;
    }

    /// <summary>The shared window, as the back-end could see it, holds no copy of the canary.</summary>
    private static void AssertWindowHoldsNoCanary(VhostUserFrontend fe)
    {
        var window = new byte[Options.SharedWindowSize];
        Assert.Equal(MemStatusOk, fe.Memory.Read(fe.WindowBase, window));
        Assert.True(window.AsSpan().IndexOf(Canary) < 0, "private bytes reached the shared window");
    }

    private const Memory.MemStatus MemStatusOk = Memory.MemStatus.Ok;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BlkDriverBouncesEveryBufferThroughTheWindowAgainstOurBackend(bool packed)
    {
        using var rig = new VhostRig(4 << 20, queues: 2, packed: packed);
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, Options);
        ulong canary = PlantCanary(fe);
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        Assert.Equal(DmaOpsKind.Bounce, drv.Device.Decision.Ops);
        Assert.Contains(drv.Device.Decision.Reasons, r => r.Contains("restricted", StringComparison.OrdinalIgnoreCase));
        // The back-end mapped exactly one region: the window, not the 16 MiB of RAM.
        Assert.Contains(rig.Log.Lines, l => l.Contains($"memory table: gpa 0x{fe.WindowBase:x}+0x{Options.SharedWindowSize:x}") && !l.Contains(", gpa"));

        var data = new byte[512 * 1024];
        new Random(7).NextBytes(data);
        Assert.Equal(BlkStatus.Ok, drv.Write(8, data));
        var back = new byte[data.Length];
        Assert.Equal(BlkStatus.Ok, drv.Read(8, back));
        Assert.Equal(data, back);
        Assert.Equal(data, rig.Disk.Data.Slice(8 * 512, data.Length).ToArray());
        var pool = fe.BouncePool!;
        Assert.True(pool.SlotsHighWater > 0 && pool.SlotsHighWater <= pool.Slots, $"high-water {pool.SlotsHighWater} of {pool.Slots}");
        Assert.Equal(0, pool.SlotsInUse);
        var stats = drv.Device.Dma.Stats;
        Assert.True(stats.BounceBytesIn >= data.Length && stats.BounceBytesOut >= data.Length, stats.ToString());
        AssertWindowHoldsNoCanary(fe);
        Assert.Equal(Canary, ReadBack(fe, canary));
    }

    /// <summary>
    /// Issue 12 item 5: the front-end logs, when it connects and its driver probes, what it shares and the DMA decision
    /// with every reason, as `explain --connect` prints them.
    /// </summary>
    [Fact]
    public void TheFrontendLogsWhatItSharesAndTheDriversDmaDecision()
    {
        using var rig = new VhostRig(4 << 20);
        var log = new VirtioSharp.Testing.ListLogger();
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, Options with { Logger = log });
        Assert.Contains(log.Lines, l => l.Contains("bounce-only: the memory table holds only a 2048 KiB window", StringComparison.Ordinal) && l.Contains("stay private", StringComparison.Ordinal));
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        var lines = log.Lines;
        Assert.NotEmpty(drv.Device.Decision.Reasons);
        foreach (var reason in drv.Device.Decision.Reasons)
            Assert.Contains(lines, l => l.EndsWith("policy: " + reason, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.EndsWith("decision: " + drv.Device.Decision.Summary, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("DMA ops: bounce", StringComparison.Ordinal));
    }

    private static byte[] ReadBack(VhostUserFrontend fe, ulong gpa)
    {
        var b = new byte[Canary.Length];
        fe.Memory.Read(gpa, b);
        return b;
    }

    [Fact]
    public void PrivateMemoryCannotBeShared()
    {
        using var rig = new VhostRig();
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, Options);
        var p = Assert.IsType<SharedWindowDmaPlatform>(fe.Platform);
        ulong priv = fe.Platform.Allocator.Allocate(4096);
        var e = Assert.Throws<InvalidOperationException>(() => fe.Platform.SetShared(priv, 4096, true));
        Assert.Contains("private memory", e.Message);
        // A range that starts in the window and runs out of it is refused too.
        Assert.Throws<InvalidOperationException>(() => fe.Platform.SetShared(p.WindowBase + p.WindowSize - 4096, 8192, true));
        // Host-visible allocations come from the window only.
        Assert.True(fe.Platform.TryAllocateShared(8192, out ulong shared));
        Assert.True(p.InWindow(shared, 8192));
        Assert.False(p.InWindow(priv, 4096));
    }

    [Fact]
    public void DriverThatSkipsTheDmaApiHandsTheBackendAddressesItCannotMap()
    {
        // PreRfc: the driver bypasses the DMA API (raw guest-physical addresses, rings in private RAM), as before the
        // 2018 RFC. On a real protected guest the back-end gets addresses outside anything it mapped: the ring is
        // refused and no request completes, and no private byte reaches the window.
        using var rig = new VhostRig();
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, Options);
        PlantCanary(fe);
        var sw = Stopwatch.StartNew();
        BlkStatus st;
        try
        {
            using var drv = BlkDriver.Probe(fe, fe.Environment(pollBudget: 5, mode: PolicyMode.PreRfc));
            Assert.Equal(DmaOpsKind.Direct, drv.Device.Decision.Ops);
            st = drv.Write(0, new byte[4096]);
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            st = BlkStatus.IoErr;
        }
        Assert.Equal(BlkStatus.IoErr, st);
        Assert.Equal(rig.DiskBefore, rig.Disk.Data.ToArray());
        Assert.Contains(rig.Log.Lines, l => l.Contains("vring 0 addresses") && l.Contains("outside every memory region"));
        AssertWindowHoldsNoCanary(fe);
    }
}
