using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests;

/// <summary>Bounce ops on protected guests: the device only ever sees the shared pool.</summary>
public class BounceTests
{
    private static readonly ulong V1 = VirtioFeature.Bit(VirtioFeature.Version1);
    private static readonly ulong AP = VirtioFeature.Bit(VirtioFeature.AccessPlatform);

    private sealed class Rig : IDisposable
    {
        public Rig(ProtectionMode mode = ProtectionMode.Fault, ulong poolSize = 1UL << 20)
        {
            Platform = new SimPlatform(new SimPlatformOptions { RamSize = 4UL << 20, Protection = mode, BouncePoolSize = poolSize });
            Device = Platform.Attach("vdisk");
            Ops = new BounceDmaOps(Platform.BouncePool!);
        }

        public SimPlatform Platform { get; }
        public SimDevice Device { get; }
        public BounceDmaOps Ops { get; }
        public BouncePool Pool => Platform.BouncePool!;

        public ulong Private(byte[] contents)
        {
            ulong gpa = Platform.Allocator.Allocate((ulong)contents.Length);
            Platform.Cpu.Write(gpa, contents);
            return gpa;
        }

        public byte[] Ram(ulong gpa, int len)
        {
            var b = new byte[len];
            Platform.Ram.Read(gpa, b);
            return b;
        }

        public void Dispose() => Platform.Dispose();
    }

    private static byte[] Pattern(int len, byte seed) => Enumerable.Range(0, len).Select(i => (byte)(i * 13 + seed)).ToArray();

    [Fact]
    public void RoundTripOnProtectedPlatformWithBounceOpsHasNoViolations()
    {
        var r = RoundTrip.Run(new RoundTripSetup
        {
            Name = "bounce", Platform = new SimPlatformOptions { Protection = ProtectionMode.Fault }, Offered = V1 | AP,
            Chains = 300, SegmentsPerRequest = 3,
        });
        Assert.Equal(DmaOpsKind.Bounce, r.Decision.Ops);
        Assert.Equal("ok", r.Outcome);
        Assert.Equal(300, r.Verified);
        Assert.Equal(0, r.ProtectionViolations);
        Assert.True(r.BounceBytes > 0);
    }

    [Fact]
    public void DirectOpsOnProtectedPlatformInFaultModeMakeTheDeviceFault()
    {
        var r = RoundTrip.Run(new RoundTripSetup
        {
            Name = "pre-rfc", Platform = new SimPlatformOptions { Protection = ProtectionMode.Fault }, Offered = V1,
            Mode = PolicyMode.PreRfc, Chains = 32,
        });
        Assert.False(r.Decision.Refused);
        Assert.False(r.Decision.UsesDmaApi);
        Assert.Equal(DmaOpsKind.Direct, r.Decision.Ops);
        Assert.True(r.ProtectionViolations > 0);
        Assert.True(r.Verified < r.Attempted || r.Attempted == 0);
        Assert.NotEqual("ok", r.Outcome);
        Assert.Contains(r.Evidence, e => e.Contains("private page"));
    }

    [Fact]
    public void DirectOpsOnProtectedPlatformInCiphertextModeCorruptData()
    {
        var r = RoundTrip.Run(new RoundTripSetup
        {
            Name = "pre-rfc-sev", Platform = new SimPlatformOptions { Protection = ProtectionMode.Ciphertext }, Offered = V1,
            Mode = PolicyMode.PreRfc, Chains = 32,
        });
        Assert.True(r.ProtectionViolations > 0);
        Assert.True(r.Verified < r.Attempted);
        Assert.NotEqual("ok", r.Outcome);
    }

    [Fact]
    public void DeviceReadingAPrivateBufferInCiphertextModeSeesCiphertext()
    {
        using var rig = new Rig(ProtectionMode.Ciphertext);
        var secret = Pattern(256, 1);
        ulong gpa = rig.Private(secret);
        var seen = new byte[256];
        Assert.Equal(MemStatus.Ok, rig.Device.Memory.Read(gpa, seen));   // succeeds...
        Assert.NotEqual(secret, seen);                                    // ...on ciphertext
        Assert.Equal(1, rig.Platform.Protection!.Violations);

        // Through the bounce pool the same bytes arrive intact and no violation is added.
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 256, DmaDirection.ToDevice, out var m));
        Assert.True(rig.Pool.Contains(m.Bus));
        Assert.Equal(MemStatus.Ok, rig.Device.Memory.Read(m.Bus, seen));
        Assert.Equal(secret, seen);
        Assert.Equal(1, rig.Platform.Protection.Violations);
        rig.Ops.Unmap(m);
    }

    [Fact]
    public void DeviceOnlySeesSharedPoolAddresses()
    {
        using var rig = new Rig();
        ulong gpa = rig.Private(Pattern(5000, 2));
        Assert.Equal(MemStatus.ProtectedPage, rig.Device.Memory.Read(gpa, new byte[16]));
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 5000, DmaDirection.Bidirectional, out var m));
        Assert.NotEqual(gpa, m.Bus);
        Assert.True(rig.Pool.Contains(m.Bus) && rig.Pool.Contains(m.Bus + 4999));
        Assert.True(rig.Platform.Protection!.IsShared(m.Bus, 5000));
        Assert.False(rig.Platform.Protection.IsShared(gpa, 5000));
        var seen = new byte[5000];
        Assert.Equal(MemStatus.Ok, rig.Device.Memory.Read(m.Bus, seen));
        Assert.Equal(Pattern(5000, 2), seen);
        rig.Ops.Unmap(m);
        Assert.Equal(0, rig.Pool.SlotsInUse);
    }

    [Fact]
    public void BytesTheDeviceDoesNotWriteComeBackUnchanged()
    {
        using var rig = new Rig();
        var original = Pattern(3000, 3);
        ulong gpa = rig.Private(original);
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 3000, DmaDirection.FromDevice, out var m));
        var written = Enumerable.Repeat((byte)0xEE, 100).ToArray();
        Assert.Equal(MemStatus.Ok, rig.Device.Memory.Write(m.Bus + 1000, written));
        rig.Ops.Unmap(m);
        var expected = (byte[])original.Clone();
        written.CopyTo(expected, 1000);
        Assert.Equal(expected, rig.Ram(gpa, 3000));
    }

    [Fact]
    public void ToDeviceMappingNeverCopiesDeviceScribblesBack()
    {
        using var rig = new Rig();
        var original = Pattern(512, 4);
        ulong gpa = rig.Private(original);
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 512, DmaDirection.ToDevice, out var m));
        Assert.Equal(MemStatus.Ok, rig.Device.Memory.Write(m.Bus, new byte[512]));   // the pool itself is writable
        rig.Ops.Unmap(m);
        Assert.Equal(original, rig.Ram(gpa, 512));
    }

    [Fact]
    public void SyncsCopyInEachDirection()
    {
        using var rig = new Rig();
        ulong gpa = rig.Private(Pattern(64, 5));
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 64, DmaDirection.Bidirectional, out var m));
        // Device writes, CPU syncs: visible without unmapping.
        rig.Device.Memory.Write(m.Bus, Pattern(64, 9));
        rig.Ops.SyncForCpu(m);
        Assert.Equal(Pattern(64, 9), rig.Ram(gpa, 64));
        // CPU writes, syncs for device: the device sees it.
        rig.Platform.Cpu.Write(gpa, Pattern(64, 11));
        rig.Ops.SyncForDevice(m);
        var seen = new byte[64];
        rig.Device.Memory.Read(m.Bus, seen);
        Assert.Equal(Pattern(64, 11), seen);
        rig.Ops.Unmap(m);
        Assert.Throws<InvalidOperationException>(() => rig.Ops.Unmap(m));   // released twice
    }

    [Fact]
    public void ExhaustionAndOversizeAreReported()
    {
        using var rig = new Rig(poolSize: 8 * BouncePool.SlotSize);
        ulong gpa = rig.Private(new byte[32 * 1024]);
        Assert.Equal(8UL * BouncePool.SlotSize, rig.Ops.MaxMappingSize);
        Assert.Equal(DmaStatus.TooLarge, rig.Ops.Map(gpa, (uint)rig.Ops.MaxMappingSize + 1, DmaDirection.ToDevice, out _));
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 3 * BouncePool.SlotSize, DmaDirection.ToDevice, out var a));
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 4 * BouncePool.SlotSize, DmaDirection.ToDevice, out var b));
        Assert.Equal(7, rig.Pool.SlotsInUse);
        Assert.Equal(DmaStatus.Exhausted, rig.Ops.Map(gpa, BouncePool.SlotSize + 1, DmaDirection.ToDevice, out _));
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 1, DmaDirection.ToDevice, out var c));
        Assert.Equal(2, rig.Pool.Failures);
        Assert.Equal(2, rig.Ops.Stats.MapErrors);
        rig.Ops.Unmap(a);
        Assert.Equal(DmaStatus.Ok, rig.Ops.Map(gpa, 3 * BouncePool.SlotSize, DmaDirection.ToDevice, out var d));
        foreach (var m in new[] { b, c, d }) rig.Ops.Unmap(m);
        Assert.Equal(0, rig.Pool.SlotsInUse);
    }

    [Fact]
    public void LargePoolStillCapsOneMappingAtTheSegmentLimit()
    {
        using var rig = new Rig(poolSize: 1UL << 20);
        Assert.Equal((ulong)BouncePool.MaxSlotsPerMapping * BouncePool.SlotSize, rig.Ops.MaxMappingSize);
        ulong gpa = rig.Private(new byte[300 * 1024]);
        Assert.Equal(DmaStatus.TooLarge, rig.Ops.Map(gpa, 300 * 1024, DmaDirection.ToDevice, out _));
        Assert.Equal(DmaStatus.BadAddress, rig.Ops.Map(rig.Platform.Options.RamSize - 8, 16, DmaDirection.ToDevice, out _));
        Assert.Equal(0, rig.Pool.SlotsInUse);
    }

    [Fact]
    public void CoherentAllocationsAreSharedAndUnsharedAgain()
    {
        using var rig = new Rig();
        int sharedBefore = rig.Platform.Protection!.SharedPages;
        Assert.Equal(DmaStatus.Ok, rig.Ops.AllocCoherent(8192, out var buf));
        Assert.True(rig.Platform.Protection.IsShared(buf.Gpa, 8192));
        Assert.Equal(MemStatus.Ok, rig.Device.Memory.Write(buf.Bus, new byte[8192]));
        rig.Ops.FreeCoherent(buf);
        Assert.Equal(sharedBefore, rig.Platform.Protection.SharedPages);
        Assert.Equal(0, rig.Platform.Protection.Violations);
    }
}
