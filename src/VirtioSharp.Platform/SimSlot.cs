using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Platform;

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
    /// <summary>The machine the slot belongs to.</summary>
    public SimMachine Machine { get; }
    /// <summary>The device's place on the platform (its address space).</summary>
    public SimDevice Device { get; }
    /// <summary>The register model's core (status, features and activation through its device host).</summary>
    public VirtioTransportCore<DeviceMemory<TranslatorRef, PortRef>> Core { get; }
    /// <summary>The transport this slot presents.</summary>
    public TransportKind Kind { get; }
    /// <summary>Interrupts the device raised so far.</summary>
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
            Ordering = Machine.Platform.Ordering,
            PollBudget = setup.PollBudget,
            Trace = setup.Trace,
        };
    }
}
