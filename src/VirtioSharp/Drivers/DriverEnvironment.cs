using VirtioSharp.Dma;

namespace VirtioSharp.Drivers;

/// <summary>What the driver core needs from the machine to give a device its DMA ops.</summary>
public sealed record DriverEnvironment
{
    /// <summary>The machine's RAM, allocator and DMA hooks.</summary>
    public required IDmaPlatform Platform { get; init; }
    /// <summary>Facts about this device's place in the machine (IOMMU, coherence, restricted memory, quirks).</summary>
    public required PlatformFacts Facts { get; init; }
    /// <summary>The device's IOMMU domain, if it sits behind an IOMMU.</summary>
    public IIommuDomain? IommuDomain { get; init; }
    /// <summary>The shared pool for bounce ops (protected guests).</summary>
    public BouncePool? BouncePool { get; init; }
    /// <summary>Which kernel's DMA behaviour the policy models.</summary>
    public PolicyMode Mode { get; init; } = PolicyMode.LinuxToday;
    /// <summary>
    /// Runs the other side until something happens (device work, an interrupt); false when nothing could progress.
    /// The simulated machine runs the device here; a real transport would wait for the interrupt eventfd.
    /// </summary>
    public Func<bool> Poll { get; init; } = () => false;
    /// <summary>How many idle polls before a wait is declared hung.</summary>
    public int PollBudget { get; init; } = 64;
    /// <summary>A simulated platform's model of the CPU's store buffer, given to every queue (null on real machines).</summary>
    public Memory.ICpuOrdering? Ordering { get; init; }
    /// <summary>Receives the probe's trace (features, decisions, queue setup).</summary>
    public Action<string>? Trace { get; init; }
}
