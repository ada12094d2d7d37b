using VirtioSharp.Devices;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Testing;

/// <summary>
/// A <see cref="SimMachine"/> set up for one <see cref="DmaMode"/> with one device on one transport, plus the leak
/// checks every probe/remove test needs (guest pages, IOMMU PTEs, bounce slots). Plug a device in with
/// <see cref="Add"/>, then drive it through <see cref="DriverTransport"/> and <see cref="Environment"/> with any driver.
/// </summary>
public sealed class SimRig : IDisposable
{
    /// <summary>A machine for <paramref name="mode"/> with <paramref name="ramSize"/> bytes of RAM (and a bounce pool in <see cref="DmaMode.Bounce"/>); page 0 is kept out of the drivers' hands.</summary>
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

    /// <summary>The mode the machine was built for.</summary>
    public DmaMode Mode { get; }
    /// <summary>The simulated machine; polling it runs device work.</summary>
    public SimMachine Machine { get; }
    /// <summary>The machine's platform (RAM, allocator, IOMMU, bounce pool).</summary>
    public SimPlatform Platform => Machine.Platform;
    /// <summary>Guest pages in use before any device was probed (the bounce pool's, if any).</summary>
    public int BaselinePages { get; }
    /// <summary>The slot of the last device added, or null.</summary>
    public SimSlot? Slot { get; private set; }

    /// <summary>Whether a device model should offer ACCESS_PLATFORM in this mode (everything but plain direct).</summary>
    public bool AccessPlatform => Mode != DmaMode.Direct;

    /// <summary>The ops kind the policy must pick in this mode.</summary>
    public DmaOpsKind ExpectedOps => Mode switch
    {
        DmaMode.IommuStrict or DmaMode.IommuLazy => DmaOpsKind.Iommu,
        DmaMode.Bounce => DmaOpsKind.Bounce,
        _ => DmaOpsKind.Direct,
    };

    /// <summary>Where devices are plugged in this mode (behind the IOMMU, coherent or not).</summary>
    public Placement Placement => new()
    {
        BehindIommu = Mode is DmaMode.IommuStrict or DmaMode.IommuLazy,
        Coherent = Mode != DmaMode.NonCoherent,
    };

    /// <summary>The driver-side DMA setup for this mode (IOMMU invalidation).</summary>
    public DriverSetup Setup => new()
    {
        Invalidation = Mode == DmaMode.IommuLazy ? InvalidationMode.Lazy : InvalidationMode.Strict,
    };

    /// <summary>Whether <paramref name="t"/> makes the driver speak legacy virtio.</summary>
    public static bool IsLegacy(SimTransport t) => t is SimTransport.MmioLegacy or SimTransport.PciLegacy or SimTransport.PciTransitionalLegacy;

    /// <summary>Plugs <paramref name="device"/> in on <paramref name="transport"/> and makes it <see cref="Slot"/>.</summary>
    public SimSlot Add(IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> device, SimTransport transport, string name = "dev")
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

    /// <summary>What a driver needs for the slot (DMA ops, memory), under DMA policy <paramref name="mode"/>.</summary>
    public DriverEnvironment Environment(PolicyMode mode = PolicyMode.LinuxToday) => Slot!.Environment(Setup with { Mode = mode });

    /// <summary>
    /// Throws <see cref="InvalidOperationException"/> (its message prefixed by <paramref name="when"/>) if guest pages,
    /// IOMMU mappings or bounce slots the probe, I/O or removal took are still held.
    /// </summary>
    public void AssertNoLeaks(string when = "")
    {
        Require.That(BaselinePages == Platform.Allocator.UsedPages, $"{when}: {Platform.Allocator.UsedPages - BaselinePages} guest pages leaked");
        if (Slot?.Device.Domain is { } d) Require.That(d.MappedPages == 0, $"{when}: {d.MappedPages} IOMMU pages still mapped");
        if (Platform.BouncePool is { } p) Require.That(p.SlotsInUse == 0, $"{when}: {p.SlotsInUse} bounce slots still in use");
    }

    /// <summary>IOVA pages an ops instance still holds after releasing what lazy invalidation keeps back.</summary>
    public static int IovaPagesInUse(IDmaOps ops)
    {
        if ((ops is NonCoherentDmaOps nc ? nc.Inner : ops) is not IommuDmaOps iommu) return 0;
        iommu.Flush();
        return iommu.IovaPagesInUse;
    }

    /// <summary>Disposes the machine.</summary>
    public void Dispose() => Machine.Dispose();
}
