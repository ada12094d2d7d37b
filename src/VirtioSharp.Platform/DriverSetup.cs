using VirtioSharp.Dma;

namespace VirtioSharp.Platform;

/// <summary>Driver-side choices for one device: the policy's mode and what firmware tells it.</summary>
public sealed record DriverSetup
{
    /// <summary>Which kernel behaviour the DMA policy models.</summary>
    public PolicyMode Mode { get; init; } = PolicyMode.LinuxToday;
    /// <summary>What firmware tells the policy about coherence (null: the truth).</summary>
    public bool? FirmwareSaysCoherent { get; init; }
    /// <summary>Apply the legacy-behind-IOMMU quirk.</summary>
    public bool LegacyIommuQuirk { get; init; }
    /// <summary>IOTLB invalidation for IOMMU ops.</summary>
    public InvalidationMode Invalidation { get; init; } = InvalidationMode.Strict;
    /// <summary>Idle polls before a wait counts as hung.</summary>
    public int PollBudget { get; init; } = 16;
    /// <summary>Receives the driver's probe trace.</summary>
    public Action<string>? Trace { get; init; }
}
