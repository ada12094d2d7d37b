using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A simulated machine with one device whose ops were chosen by the DMA policy for <see cref="DmaMode"/>, plus
/// helpers to build a driver/device queue pair over it and to check nothing leaked.
/// </summary>
public sealed class DmaRig : IDisposable
{
    public static readonly ulong V1 = VirtioFeature.Bit(VirtioFeature.Version1);
    public static readonly ulong AccessPlatform = VirtioFeature.Bit(VirtioFeature.AccessPlatform);

    private DmaRig(DmaMode mode, SimPlatform platform, SimDevice device, DmaDecision decision)
    {
        Mode = mode;
        Platform = platform;
        Device = device;
        Decision = decision;
        Ops = device.CreateOps(decision);
    }

    public DmaMode Mode { get; }
    public SimPlatform Platform { get; }
    public SimDevice Device { get; }
    public DmaDecision Decision { get; }
    public IDmaOps Ops { get; }
    public IommuDmaOps? Iommu => (Ops is NonCoherentDmaOps nc ? nc.Inner : Ops) as IommuDmaOps;
    public BouncePool? Pool => Mode == DmaMode.Bounce ? Platform.BouncePool : null;

    public static DmaRig Create(DmaMode mode, ulong ramSize = 8UL << 20, ulong bouncePoolSize = 1UL << 20)
    {
        var opts = new SimPlatformOptions
        {
            RamSize = ramSize,
            BouncePoolSize = mode == DmaMode.Bounce ? bouncePoolSize : 0,
            HasIommu = mode is DmaMode.IommuStrict or DmaMode.IommuLazy,
            Protection = mode == DmaMode.Bounce ? ProtectionMode.Fault : null,
            CpuCache = mode is DmaMode.NonCoherent or DmaMode.CoherentCached,
        };
        var platform = new SimPlatform(opts);
        var device = platform.Attach("dev", behindIommu: opts.HasIommu, coherent: mode != DmaMode.NonCoherent);
        var facts = device.Facts(invalidation: mode == DmaMode.IommuLazy ? InvalidationMode.Lazy : InvalidationMode.Strict);
        ulong offered = mode == DmaMode.Direct ? V1 : V1 | AccessPlatform;   // CoherentCached: ACCESS_PLATFORM, coherent
        var decision = DmaPolicy.Decide(facts, TransportKind.Pci, offered, 0);
        var expected = mode switch
        {
            DmaMode.IommuStrict or DmaMode.IommuLazy => DmaOpsKind.Iommu,
            DmaMode.Bounce => DmaOpsKind.Bounce,
            _ => DmaOpsKind.Direct,
        };
        Assert.False(decision.Refused, string.Join("\n", decision.Reasons));
        Assert.Equal(expected, decision.Ops);
        Assert.Equal(mode == DmaMode.NonCoherent, decision.NonCoherentOps);
        return new DmaRig(mode, platform, device, decision);
    }

    public DriverQueue CreateDriver(ushort size, QueueOptions options) => new(Ops, Platform.Ram, size, options);

    public DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> CreateDevice(DriverQueue driver, QueueOptions options) =>
        new(Device.Memory, driver.DeviceLayout, options);

    /// <summary>A buffer of <paramref name="length"/> bytes at <paramref name="offset"/> into fresh pages, filled through the CPU.</summary>
    public ulong AllocBuffer(int length, int offset, ReadOnlySpan<byte> contents)
    {
        ulong gpa = Platform.Allocator.Allocate((ulong)(length + offset)) + (ulong)offset;
        Assert.Equal(MemStatus.Ok, Platform.Cpu.Write(gpa, contents));
        return gpa;
    }

    public void FreeBuffer(ulong gpa, int length) =>
        Platform.Allocator.Free(gpa & ~4095UL, (gpa & 4095UL) + (ulong)length);

    public byte[] CpuRead(ulong gpa, int length)
    {
        var b = new byte[length];
        Assert.Equal(MemStatus.Ok, Platform.Cpu.Read(gpa, b));
        return b;
    }

    /// <summary>IOVA pages held now, after releasing what lazy invalidation keeps back.</summary>
    public int IovaPagesInUse()
    {
        Iommu?.Flush();
        return Iommu?.IovaPagesInUse ?? 0;
    }

    /// <summary>No streaming mapping, bounce slot, IOMMU fault or protection violation is left.</summary>
    public void AssertNoLeaksOrFaults(int ringIovaPages)
    {
        Assert.Equal(0, Ops.Stats.Outstanding);
        if (Pool is { } pool) Assert.Equal(0, pool.SlotsInUse);
        Assert.Equal(ringIovaPages, IovaPagesInUse());
        Assert.Equal(0, Platform.Iommu?.FaultCount ?? 0);
        Assert.Equal(0, Platform.Protection?.Violations ?? 0);
    }

    public void Dispose() => Platform.Dispose();
}
