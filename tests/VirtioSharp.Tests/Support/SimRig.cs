using VirtioSharp.Devices;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A <see cref="SimMachine"/> set up for one <see cref="DmaMode"/> with one device on one transport, plus the leak
/// checks every probe/remove test needs (guest pages, IOMMU PTEs, bounce slots).
/// </summary>
public sealed class SimRig : IDisposable
{
    public SimRig(DmaMode mode, ulong ramSize = 16UL << 20, ulong bouncePoolSize = 1UL << 20)
    {
        Mode = mode;
        Machine = new SimMachine(new SimPlatformOptions
        {
            RamSize = ramSize,
            HasIommu = mode is DmaMode.IommuStrict or DmaMode.IommuLazy,
            Protection = mode == DmaMode.Bounce ? ProtectionMode.Fault : null,
            CpuCache = mode is DmaMode.NonCoherent or DmaMode.CoherentCached,
            BouncePoolSize = mode == DmaMode.Bounce ? bouncePoolSize : 0,
        });
        // Keep page 0 out of the drivers' hands (as firmware does): a legacy queue cannot live there (PFN 0 = none).
        if (Machine.Platform.BouncePool is null) Machine.Platform.Allocator.Allocate(GuestAllocator.PageSize);
        BaselinePages = Machine.Platform.Allocator.UsedPages;
    }

    public DmaMode Mode { get; }
    internal SimMachine Machine { get; }
    public SimPlatform Platform => Machine.Platform;
    /// <summary>Guest pages in use before any device was probed (the bounce pool's, if any).</summary>
    public int BaselinePages { get; }
    internal SimSlot? Slot { get; private set; }

    /// <summary>Whether a device model should offer ACCESS_PLATFORM in this mode (everything but plain direct).</summary>
    public bool AccessPlatform => Mode != DmaMode.Direct;

    /// <summary>The ops kind the policy must pick in this mode.</summary>
    public DmaOpsKind ExpectedOps => Mode switch
    {
        DmaMode.IommuStrict or DmaMode.IommuLazy => DmaOpsKind.Iommu,
        DmaMode.Bounce => DmaOpsKind.Bounce,
        _ => DmaOpsKind.Direct,
    };

    public Placement Placement => new()
    {
        BehindIommu = Mode is DmaMode.IommuStrict or DmaMode.IommuLazy,
        Coherent = Mode != DmaMode.NonCoherent,
    };

    public DriverSetup Setup => new()
    {
        Invalidation = Mode == DmaMode.IommuLazy ? InvalidationMode.Lazy : InvalidationMode.Strict,
    };

    public static bool IsLegacy(SimTransport t) => t is SimTransport.MmioLegacy or SimTransport.PciLegacy or SimTransport.PciTransitionalLegacy;

    /// <summary>Plugs <paramref name="device"/> in on <paramref name="transport"/>.</summary>
    internal SimSlot Add(IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> device, SimTransport transport, string name = "dev")
    {
        Slot = transport switch
        {
            SimTransport.Mmio => Machine.AddMmio(device, name, legacy: false, Placement),
            SimTransport.MmioLegacy => Machine.AddMmio(device, name, legacy: true, Placement),
            SimTransport.Pci => Machine.AddPci(device, name, PciMode.Modern, Placement),
            SimTransport.PciLegacy => Machine.AddPci(device, name, PciMode.Legacy, Placement),
            _ => Machine.AddPci(device, name, PciMode.Transitional, Placement),
        };
        _transport = transport;
        return Slot;
    }

    private SimTransport _transport;

    /// <summary>The driver's transport for the slot (transitional PCI driven in legacy mode when asked).</summary>
    public IVirtioTransport DriverTransport() => Slot!.DriverTransport(forceLegacy: _transport == SimTransport.PciTransitionalLegacy);

    public DriverEnvironment Environment(PolicyMode mode = PolicyMode.LinuxToday) => Slot!.Environment(Setup with { Mode = mode });

    /// <summary>Nothing the probe, I/O or removal took is still held.</summary>
    public void AssertNoLeaks(string when = "")
    {
        Assert.True(BaselinePages == Platform.Allocator.UsedPages, $"{when}: {Platform.Allocator.UsedPages - BaselinePages} guest pages leaked");
        if (Slot?.Device.Domain is { } d) Assert.True(d.MappedPages == 0, $"{when}: {d.MappedPages} IOMMU pages still mapped");
        if (Platform.BouncePool is { } p) Assert.True(p.SlotsInUse == 0, $"{when}: {p.SlotsInUse} bounce slots still in use");
    }

    /// <summary>IOVA pages an ops instance still holds after releasing what lazy invalidation keeps back.</summary>
    public static int IovaPagesInUse(IDmaOps ops)
    {
        if ((ops is NonCoherentDmaOps nc ? nc.Inner : ops) is not IommuDmaOps iommu) return 0;
        iommu.Flush();
        return iommu.IovaPagesInUse;
    }

    public void Dispose() => Machine.Dispose();
}
