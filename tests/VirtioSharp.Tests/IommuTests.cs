using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;

namespace VirtioSharp.Tests;

/// <summary>The simulated IOMMU and the IOMMU DMA ops: invalidation, permissions, bypass, the fault log, IOVA space.</summary>
public class IommuTests
{
    private sealed class Rig : IDisposable
    {
        public Rig(InvalidationMode mode = InvalidationMode.Strict, bool bypass = false)
        {
            Platform = new SimPlatform(new SimPlatformOptions { RamSize = 4UL << 20, HasIommu = true, BouncePoolSize = 0 });
            Device = Platform.Attach("nic0", behindIommu: true, iommuBypass: bypass);
            Ops = new IommuDmaOps(Platform, Device.Domain!, mode);
        }

        public SimPlatform Platform { get; }
        public SimDevice Device { get; }
        public IommuDmaOps Ops { get; }
        public IommuDomain Domain => Device.Domain!;
        public Iommu Iommu => Platform.Iommu!;

        public ulong Buffer(int len, byte seed, int offset = 0)
        {
            ulong gpa = Platform.Allocator.Allocate((ulong)(len + offset)) + (ulong)offset;
            Platform.Ram.Write(gpa, Pattern(len, seed));
            return gpa;
        }

        public DmaMapping Map(ulong gpa, int len, DmaDirection dir)
        {
            Assert.Equal(DmaStatus.Ok, Ops.Map(gpa, (uint)len, dir, out var m));
            return m;
        }

        public MemStatus DeviceRead(ulong bus, byte[] dst) => Device.Memory.Read(bus, dst);
        public MemStatus DeviceWrite(ulong bus, byte[] src) => Device.Memory.Write(bus, src);
        public void Dispose() => Platform.Dispose();
    }

    private static byte[] Pattern(int len, byte seed) => Enumerable.Range(0, len).Select(i => (byte)(i * 7 + seed)).ToArray();

    [Fact]
    public void MissingInvalidationLeavesFreedIovaReachableThroughStaleIotlb()
    {
        using var rig = new Rig();
        rig.Ops.SkipInvalidation = true;
        ulong gpa = rig.Buffer(256, 1);
        var m = rig.Map(gpa, 256, DmaDirection.ToDevice);
        var seen = new byte[256];
        Assert.Equal(MemStatus.Ok, rig.DeviceRead(m.Bus, seen));   // the device's access fills the IOTLB

        rig.Ops.Unmap(m);
        Assert.Equal(0, rig.Domain.MappedPages);                    // gone from the page table...
        Assert.True(rig.Domain.IotlbHolds(m.Bus));                  // ...but not from the IOTLB
        Array.Clear(seen);
        Assert.Equal(MemStatus.Ok, rig.DeviceRead(m.Bus, seen));
        Assert.Equal(Pattern(256, 1), seen);                        // the device still reads the freed buffer
        Assert.Equal(0, rig.Iommu.FaultCount);
    }

    [Fact]
    public void StrictUnmapRevokesAccessAtOnce()
    {
        using var rig = new Rig(InvalidationMode.Strict);
        var m = rig.Map(rig.Buffer(256, 2), 256, DmaDirection.ToDevice);
        Assert.Equal(MemStatus.Ok, rig.DeviceRead(m.Bus, new byte[256]));
        rig.Ops.Unmap(m);
        Assert.False(rig.Domain.IotlbHolds(m.Bus));
        Assert.Equal(MemStatus.TranslationFault, rig.DeviceRead(m.Bus, new byte[256]));
        var f = Assert.Single(rig.Iommu.Faults);
        Assert.Equal((rig.Device.Name, m.Bus, Access.Read, MemStatus.TranslationFault), (f.Device, f.Iova, f.Access, f.Reason));
        Assert.Equal(0, rig.Ops.IovaPagesInUse);
    }

    [Fact]
    public void LazyUnmapLeavesAccessUntilFlushThenFaults()
    {
        using var rig = new Rig(InvalidationMode.Lazy);
        var m = rig.Map(rig.Buffer(256, 3), 256, DmaDirection.ToDevice);
        Assert.Equal(MemStatus.Ok, rig.DeviceRead(m.Bus, new byte[256]));
        rig.Ops.Unmap(m);
        Assert.Equal(1, rig.Ops.PendingInvalidations);
        Assert.Equal(1, rig.Ops.IovaPagesInUse);                    // held back so it is not reused while stale
        var seen = new byte[256];
        Assert.Equal(MemStatus.Ok, rig.DeviceRead(m.Bus, seen));
        Assert.Equal(Pattern(256, 3), seen);
        Assert.Equal(0, rig.Iommu.FaultCount);

        rig.Ops.Flush();
        Assert.Equal(0, rig.Ops.PendingInvalidations);
        Assert.Equal(0, rig.Ops.IovaPagesInUse);
        Assert.Equal(MemStatus.TranslationFault, rig.DeviceRead(m.Bus, seen));
        Assert.Equal(1, rig.Iommu.FaultCount);
    }

    [Fact]
    public void LazyModeFlushesByItselfAfterABatch()
    {
        using var rig = new Rig(InvalidationMode.Lazy);
        ulong gpa = rig.Buffer(64, 4);
        var maps = Enumerable.Range(0, 64).Select(_ => rig.Map(gpa, 64, DmaDirection.ToDevice)).ToList();
        long inv = rig.Ops.Stats.Invalidations;
        foreach (var m in maps.Take(63)) rig.Ops.Unmap(m);
        Assert.Equal(63, rig.Ops.PendingInvalidations);
        Assert.Equal(inv, rig.Ops.Stats.Invalidations);
        rig.Ops.Unmap(maps[63]);
        Assert.Equal(0, rig.Ops.PendingInvalidations);
        Assert.Equal(inv + 1, rig.Ops.Stats.Invalidations);
        Assert.Equal(0, rig.Ops.IovaPagesInUse);
    }

    [Theory]
    [InlineData(DmaDirection.ToDevice, true, false)]
    [InlineData(DmaDirection.FromDevice, false, true)]
    [InlineData(DmaDirection.Bidirectional, true, true)]
    public void MappingPermissionsFollowTheDirection(DmaDirection dir, bool canRead, bool canWrite)
    {
        using var rig = new Rig();
        ulong gpa = rig.Buffer(128, 5);
        var m = rig.Map(gpa, 128, dir);
        Assert.Equal(canRead ? MemStatus.Ok : MemStatus.PermissionFault, rig.DeviceRead(m.Bus, new byte[128]));
        Assert.Equal(canWrite ? MemStatus.Ok : MemStatus.PermissionFault, rig.DeviceWrite(m.Bus, new byte[128]));
        var ram = new byte[128];
        rig.Platform.Ram.Read(gpa, ram);
        Assert.Equal(canWrite ? new byte[128] : Pattern(128, 5), ram);   // a refused write changed nothing
        var expectedFaults = new List<Access>();
        if (!canRead) expectedFaults.Add(Access.Read);
        if (!canWrite) expectedFaults.Add(Access.Write);
        Assert.Equal(expectedFaults, rig.Iommu.Faults.Select(f => f.Access).ToList());
        Assert.All(rig.Iommu.Faults, f => Assert.Equal(MemStatus.PermissionFault, f.Reason));
    }

    [Fact]
    public void BypassPassesGuestPhysicalAddressesThrough()
    {
        using var bypass = new Rig(bypass: true);
        ulong gpa = bypass.Buffer(64, 6);
        var seen = new byte[64];
        Assert.Equal(MemStatus.Ok, bypass.DeviceRead(gpa, seen));
        Assert.Equal(Pattern(64, 6), seen);
        Assert.Equal(0, bypass.Iommu.FaultCount);

        using var translated = new Rig();
        ulong gpa2 = translated.Buffer(64, 6);
        Assert.Equal(MemStatus.TranslationFault, translated.DeviceRead(gpa2, seen));
        Assert.Equal(gpa2, Assert.Single(translated.Iommu.Faults).Iova);
    }

    [Fact]
    public void FaultLogRecordsDeviceIovaAccessAndReason()
    {
        using var platform = new SimPlatform(new SimPlatformOptions { RamSize = 1UL << 20, HasIommu = true, BouncePoolSize = 0 });
        var a = platform.Attach("disk-a", behindIommu: true);
        var b = platform.Attach("disk-b", behindIommu: true);
        ulong iovaA = a.Domain!.ApertureBase + 0x5000, iovaB = b.Domain!.ApertureBase + 0x9123;
        a.Domain.MapPage(iovaA, 0x1000, Access.Read);

        Assert.Equal(MemStatus.PermissionFault, a.Memory.Write(iovaA + 8, new byte[4]));
        Assert.Equal(MemStatus.TranslationFault, b.Memory.Read(iovaB, new byte[4]));
        Assert.Equal(MemStatus.TranslationFault, b.Memory.Read(iovaA, new byte[4]));   // another device's mapping

        Assert.Equal(
        [
            new IommuFault("disk-a", iovaA + 8, Access.Write, MemStatus.PermissionFault),
            new IommuFault("disk-b", iovaB, Access.Read, MemStatus.TranslationFault),
            new IommuFault("disk-b", iovaA, Access.Read, MemStatus.TranslationFault),
        ], platform.Iommu!.Faults);
        Assert.Contains("disk-b", platform.Iommu.Faults[1].ToString());
        Assert.Contains($"0x{iovaB:x}", platform.Iommu.Faults[1].ToString());
        platform.Iommu.ClearFaults();
        Assert.Empty(platform.Iommu.Faults);
        Assert.Equal(0, platform.Iommu.FaultCount);
    }

    [Fact]
    public void MappingKeepsTheOffsetInPageAndSpansPages()
    {
        using var rig = new Rig();
        ulong gpa = rig.Buffer(300, 7, offset: 4000);
        var m = rig.Map(gpa, 300, DmaDirection.ToDevice);
        Assert.Equal(gpa & 4095, m.Bus & 4095);
        Assert.Equal(2, rig.Ops.IovaPagesInUse);
        var seen = new byte[300];
        Assert.Equal(MemStatus.Ok, rig.DeviceRead(m.Bus, seen));
        Assert.Equal(Pattern(300, 7), seen);
        // One byte past the mapping is another (unmapped) page.
        Assert.Equal(MemStatus.TranslationFault, rig.DeviceRead(m.Bus + 4096 * 2 - (gpa & 4095), new byte[1]));
        rig.Ops.Unmap(m);
        Assert.Equal(0, rig.Ops.IovaPagesInUse);
        Assert.Equal(0, rig.Domain.MappedPages);
    }

    [Fact]
    public void DeviceWriteThatFaultsHalfWayWritesNothing()
    {
        using var rig = new Rig();
        ulong gpa = rig.Buffer(4096, 8);
        var m = rig.Map(gpa, 4096, DmaDirection.FromDevice);   // one page; the next IOVA page is unmapped
        Assert.Equal(MemStatus.TranslationFault, rig.DeviceWrite(m.Bus + 4000, new byte[200]));
        var ram = new byte[4096];
        rig.Platform.Ram.Read(gpa, ram);
        Assert.Equal(Pattern(4096, 8), ram);
    }

    [Theory]
    [InlineData(InvalidationMode.Strict)]
    [InlineData(InvalidationMode.Lazy)]
    public void IovaExhaustionIsReportedAndLazyModeRecoversByFlushing(InvalidationMode mode)
    {
        using var platform = new SimPlatform(new SimPlatformOptions { RamSize = 1UL << 20, BouncePoolSize = 0 });
        var iommu = new Iommu { ApertureSize = 16 * 4096 };
        var ops = new IommuDmaOps(platform, iommu.CreateDomain("small"), mode);
        ulong gpa = platform.Allocator.Allocate(4 * 4096);
        var maps = new List<DmaMapping>();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(DmaStatus.Ok, ops.Map(gpa, 4 * 4096, DmaDirection.ToDevice, out var m));
            maps.Add(m);
        }
        Assert.Equal(DmaStatus.Exhausted, ops.Map(gpa, 1, DmaDirection.ToDevice, out _));
        Assert.Equal(1, ops.Stats.MapErrors);
        ops.Unmap(maps[0]);
        Assert.Equal(DmaStatus.Ok, ops.Map(gpa, 4 * 4096, DmaDirection.ToDevice, out _));
        Assert.Equal(16, ops.IovaPagesInUse);
        Assert.Equal(0, ops.PendingInvalidations);
    }
}
