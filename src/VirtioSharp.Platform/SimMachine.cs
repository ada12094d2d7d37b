using VirtioSharp.Devices;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Platform;

/// <summary>Where a device sits in the simulated machine.</summary>
public sealed record Placement
{
    public bool BehindIommu { get; init; }
    public bool IommuBypass { get; init; }
    /// <summary>Whether the device really snoops the CPU cache.</summary>
    public bool Coherent { get; init; } = true;
    public ulong DmaOffset { get; init; }
}

/// <summary>Driver-side choices for one device: the policy's mode and what firmware tells it.</summary>
public sealed record DriverSetup
{
    public PolicyMode Mode { get; init; } = PolicyMode.LinuxToday;
    public bool? FirmwareSaysCoherent { get; init; }
    public bool LegacyIommuQuirk { get; init; }
    public InvalidationMode Invalidation { get; init; } = InvalidationMode.Strict;
    public int PollBudget { get; init; } = 16;
    public Action<string>? Trace { get; init; }
}

/// <summary>A device plugged into a transport slot of the machine.</summary>
public sealed class SimSlot
{
    internal SimSlot(SimMachine machine, SimDevice device, VirtioTransportCore<DeviceMemory<TranslatorRef, PortRef>> core, Func<bool, IVirtioTransport> driverTransport, TransportKind kind)
    {
        Machine = machine;
        Device = device;
        Core = core;
        _driverTransport = driverTransport;
        Kind = kind;
        core.InterruptRaised += () => InterruptsRaised++;
    }

    private readonly Func<bool, IVirtioTransport> _driverTransport;
    public SimMachine Machine { get; }
    public SimDevice Device { get; }
    public VirtioTransportCore<DeviceMemory<TranslatorRef, PortRef>> Core { get; }
    public TransportKind Kind { get; }
    public long InterruptsRaised { get; private set; }

    /// <summary>The driver's transport for this slot; <paramref name="forceLegacy"/> drives a transitional PCI device in legacy mode.</summary>
    public IVirtioTransport DriverTransport(bool forceLegacy = false) => _driverTransport(forceLegacy);

    /// <summary>The environment a driver probing this slot gets.</summary>
    public DriverEnvironment Environment(DriverSetup? setup = null)
    {
        setup ??= new DriverSetup();
        return new DriverEnvironment
        {
            Platform = Machine.Platform,
            Facts = Device.Facts(setup.FirmwareSaysCoherent, setup.LegacyIommuQuirk, setup.Invalidation, Device.Translator is OffsetTranslator o ? o.Offset : 0),
            IommuDomain = Device.Domain,
            BouncePool = Machine.Platform.BouncePool,
            Mode = setup.Mode,
            Poll = Machine.Poll,
            PollBudget = setup.PollBudget,
            Trace = setup.Trace,
        };
    }
}

/// <summary>
/// A simulated machine with devices on virtio-mmio and virtio-pci slots. Device work runs when the driver notifies
/// (or, with <see cref="Deferred"/>, when the machine is polled), all on the caller's thread, so runs are repeatable.
/// </summary>
public sealed class SimMachine(SimPlatformOptions options) : IDisposable
{
    private readonly List<SimSlot> _slots = new();

    public SimPlatform Platform { get; } = new(options);
    public IReadOnlyList<SimSlot> Slots => _slots;

    /// <summary>Queue notifications and run devices only when polled: requests pile up in flight.</summary>
    public bool Deferred
    {
        get;
        set { field = value; foreach (var s in _slots) s.Core.Deferred = value; }
    }

    public SimSlot AddMmio(IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> device, string name, bool legacy = false, Placement? at = null)
    {
        var dev = Attach(name, at);
        var mmio = new VirtioMmioDevice<DeviceMemory<TranslatorRef, PortRef>>(device, dev.Memory, legacy, name);
        return Add(new SimSlot(this, dev, mmio.Core, _ => new MmioTransport(mmio), legacy ? TransportKind.MmioLegacy : TransportKind.Mmio));
    }

    public SimSlot AddPci(IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> device, string name, PciMode mode = PciMode.Modern, Placement? at = null)
    {
        var dev = Attach(name, at);
        var pci = new VirtioPciDevice<DeviceMemory<TranslatorRef, PortRef>>(device, dev.Memory, mode, name);
        return Add(new SimSlot(this, dev, pci.Core, legacy => new PciTransport(pci.ConfigSpace, pci.Bar, legacy),
            mode == PciMode.Legacy ? TransportKind.PciLegacy : TransportKind.Pci));
    }

    private SimDevice Attach(string name, Placement? at)
    {
        at ??= new Placement();
        return Platform.Attach(name, at.BehindIommu, at.IommuBypass, at.Coherent, at.DmaOffset);
    }

    private SimSlot Add(SimSlot slot)
    {
        slot.Core.Deferred = Deferred;
        _slots.Add(slot);
        return slot;
    }

    /// <summary>Runs deferred device work; true if any device ran.</summary>
    public bool Poll()
    {
        int ran = 0;
        foreach (var s in _slots) ran += s.Core.RunPending();
        return ran > 0;
    }

    public void Dispose() => Platform.Dispose();
}
