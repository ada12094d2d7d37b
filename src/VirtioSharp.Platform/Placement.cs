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
