using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Testing;

/// <summary>
/// A simulated machine with one device whose ops were chosen by the DMA policy for <see cref="DmaMode"/>, plus
/// helpers to build a driver/device queue pair over it and to check nothing leaked.
/// </summary>
public sealed class DmaRig : IDisposable
{
    /// <summary>The VERSION_1 feature bit as a mask.</summary>
    public static readonly ulong V1 = VirtioFeature.Bit(VirtioFeature.Version1);
    /// <summary>The ACCESS_PLATFORM feature bit as a mask.</summary>
    public static readonly ulong AccessPlatform = VirtioFeature.Bit(VirtioFeature.AccessPlatform);

    private DmaRig(DmaMode mode, SimPlatform platform, SimDevice device, DmaDecision decision)
    {
        Mode = mode;
        Platform = platform;
        Device = device;
        Decision = decision;
        Ops = device.CreateOps(decision);
    }

    /// <summary>The mode the rig was built for.</summary>
    public DmaMode Mode { get; }
    /// <summary>The simulated platform (RAM, CPU view, allocator, IOMMU, protection).</summary>
    public SimPlatform Platform { get; }
    /// <summary>The one attached device; its <see cref="SimDevice.Memory"/> is the device's view.</summary>
    public SimDevice Device { get; }
    /// <summary>What the DMA policy decided for the device.</summary>
    public DmaDecision Decision { get; }
    /// <summary>The driver-side DMA ops the decision produced.</summary>
    public IDmaOps Ops { get; }
    /// <summary>The IOMMU ops under <see cref="Ops"/>, if the mode has an IOMMU.</summary>
    public IommuDmaOps? Iommu => (Ops is NonCoherentDmaOps nc ? nc.Inner : Ops) as IommuDmaOps;
    /// <summary>The bounce pool in <see cref="DmaMode.Bounce"/>, else null.</summary>
    public BouncePool? Pool => Mode == DmaMode.Bounce ? Platform.BouncePool : null;

    /// <summary>
    /// Builds the machine for <paramref name="mode"/>. Throws <see cref="InvalidOperationException"/> if the DMA policy
    /// refuses or picks other ops than the mode calls for.
    /// </summary>
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
        try
        {
            Require.That(!decision.Refused, $"DMA policy refused {mode}: " + string.Join("\n", decision.Reasons));
            Require.Equal(expected, decision.Ops, $"DMA ops for {mode}");
            Require.Equal(mode == DmaMode.NonCoherent, decision.NonCoherentOps, $"non-coherent ops for {mode}");
        }
        catch
        {
            platform.Dispose();
            throw;
        }
        return new DmaRig(mode, platform, device, decision);
    }

    /// <summary>A driver queue of <paramref name="size"/> entries using the rig's ops.</summary>
    public DriverQueue CreateDriver(ushort size, QueueOptions options) => new(Ops, Platform.Ram, size, options);

    /// <summary>The device queue facing <paramref name="driver"/>, through the device's view of memory.</summary>
    public DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> CreateDevice(DriverQueue driver, QueueOptions options) =>
        new(Device.Memory, driver.DeviceLayout, options);

    /// <summary>A buffer of <paramref name="length"/> bytes at <paramref name="offset"/> into fresh pages, filled through the CPU; returns its GPA.</summary>
    public ulong AllocBuffer(int length, int offset, ReadOnlySpan<byte> contents)
    {
        ulong gpa = Platform.Allocator.Allocate((ulong)(length + offset)) + (ulong)offset;
        Require.Ok(Platform.Cpu.Write(gpa, contents), $"CPU write of buffer at 0x{gpa:x}");
        return gpa;
    }

    /// <summary>Returns the pages of a buffer from <see cref="AllocBuffer"/>.</summary>
    public void FreeBuffer(ulong gpa, int length) =>
        Platform.Allocator.Free(gpa & ~4095UL, (gpa & 4095UL) + (ulong)length);

    /// <summary>Reads guest memory as the CPU sees it (through the cache, if any).</summary>
    public byte[] CpuRead(ulong gpa, int length)
    {
        var b = new byte[length];
        Require.Ok(Platform.Cpu.Read(gpa, b), $"CPU read at 0x{gpa:x}");
        return b;
    }

    /// <summary>IOVA pages held now, after releasing what lazy invalidation keeps back.</summary>
    public int IovaPagesInUse()
    {
        Iommu?.Flush();
        return Iommu?.IovaPagesInUse ?? 0;
    }

    /// <summary>
    /// Throws <see cref="InvalidOperationException"/> if a streaming mapping, bounce slot, IOVA page beyond
    /// <paramref name="ringIovaPages"/>, IOMMU fault or protection violation is left.
    /// </summary>
    public void AssertNoLeaksOrFaults(int ringIovaPages)
    {
        Require.Equal(0L, (long)Ops.Stats.Outstanding, "outstanding DMA mappings");
        if (Pool is { } pool) Require.Equal(0L, (long)pool.SlotsInUse, "bounce slots in use");
        Require.Equal(ringIovaPages, IovaPagesInUse(), "IOVA pages in use");
        Require.Equal(0L, (long)(Platform.Iommu?.FaultCount ?? 0), "IOMMU faults");
        Require.Equal(0L, (long)(Platform.Protection?.Violations ?? 0), "protection violations");
    }

    /// <summary>Disposes the platform.</summary>
    public void Dispose() => Platform.Dispose();
}
