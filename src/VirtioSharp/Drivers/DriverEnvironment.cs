using VirtioSharp.Dma;

namespace VirtioSharp.Drivers;

/// <summary>What the driver core needs from the machine to give a device its DMA ops.</summary>
public sealed record DriverEnvironment
{
    public required IDmaPlatform Platform { get; init; }
    /// <summary>Facts about this device's place in the machine (IOMMU, coherence, restricted memory, quirks).</summary>
    public required PlatformFacts Facts { get; init; }
    public IIommuDomain? IommuDomain { get; init; }
    public BouncePool? BouncePool { get; init; }
    public PolicyMode Mode { get; init; } = PolicyMode.LinuxToday;
    /// <summary>
    /// Runs the other side until something happens (device work, an interrupt); false when nothing could progress.
    /// The simulated machine runs the device here; a real transport would wait for the interrupt eventfd.
    /// </summary>
    public Func<bool> Poll { get; init; } = () => false;
    /// <summary>How many idle polls before a wait is declared hung.</summary>
    public int PollBudget { get; init; } = 64;
    /// <summary>Receives the probe's trace (features, decisions, queue setup).</summary>
    public Action<string>? Trace { get; init; }
}
