using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Platform;

/// <summary>A device plugged into a transport slot of the machine.</summary>
internal sealed class SimSlot
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
