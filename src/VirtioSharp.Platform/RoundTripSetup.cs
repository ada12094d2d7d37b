using VirtioSharp.Dma;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform;

/// <summary>A machine, a device on it, what the device offers and which rules the driver follows.</summary>
public sealed record RoundTripSetup
{
    public required string Name { get; init; }
    public SimPlatformOptions Platform { get; init; } = new();
    public bool BehindIommu { get; init; }
    public bool IommuBypass { get; init; }
    /// <summary>Whether the device really snoops the CPU cache.</summary>
    public bool DeviceCoherent { get; init; } = true;
    /// <summary>What firmware tells the policy about coherence (null: the truth).</summary>
    public bool? FirmwareSaysCoherent { get; init; }
    public ulong Offered { get; init; } = VirtioFeature.Bit(VirtioFeature.Version1);
    public ulong Wanted { get; init; } = VirtioFeature.Bit(VirtioFeature.IndirectDesc) | VirtioFeature.Bit(VirtioFeature.EventIdx);
    public TransportKind Transport { get; init; } = TransportKind.Pci;
    public PolicyMode Mode { get; init; } = PolicyMode.LinuxToday;
    public bool LegacyIommuQuirk { get; init; }
    public InvalidationMode Invalidation { get; init; } = InvalidationMode.Strict;
    public ulong DmaOffset { get; init; }
    public ushort QueueSize { get; init; } = 64;
    public int Chains { get; init; } = 256;
    public int MaxPayload { get; init; } = 4096;
    public int Seed { get; init; } = 1;
    /// <summary>Split each request into this many readable segments (exercises indirect tables).</summary>
    public int SegmentsPerRequest { get; init; } = 1;
}
