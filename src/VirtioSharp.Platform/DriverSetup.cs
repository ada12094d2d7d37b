using VirtioSharp.Dma;

namespace VirtioSharp.Platform;

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
