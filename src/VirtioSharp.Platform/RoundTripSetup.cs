using VirtioSharp.Dma;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform;

/// <summary>A machine, a device on it, what the device offers and which rules the driver follows.</summary>
public sealed record RoundTripSetup
{
    /// <summary>Name for tables and logs.</summary>
    public required string Name { get; init; }
    /// <summary>The simulated machine.</summary>
    public SimPlatformOptions Platform { get; init; } = new();
    /// <summary>The device's DMA goes through the IOMMU.</summary>
    public bool BehindIommu { get; init; }
    /// <summary>The IOMMU passes the device's DMA through untranslated.</summary>
    public bool IommuBypass { get; init; }
    /// <summary>Whether the device really snoops the CPU cache.</summary>
    public bool DeviceCoherent { get; init; } = true;
    /// <summary>What firmware tells the policy about coherence (null: the truth).</summary>
    public bool? FirmwareSaysCoherent { get; init; }
    /// <summary>Features the device offers.</summary>
    public ulong Offered { get; init; } = VirtioFeature.Bit(VirtioFeature.Version1);
    /// <summary>Features the driver wants; the policy adds the platform bits.</summary>
    public ulong Wanted { get; init; } = VirtioFeature.Bit(VirtioFeature.IndirectDesc) | VirtioFeature.Bit(VirtioFeature.EventIdx);
    /// <summary>Transport the device is reported on.</summary>
    public TransportKind Transport { get; init; } = TransportKind.Pci;
    /// <summary>Which kernel behaviour the DMA policy models.</summary>
    public PolicyMode Mode { get; init; } = PolicyMode.LinuxToday;
    /// <summary>Apply the legacy-behind-IOMMU quirk.</summary>
    public bool LegacyIommuQuirk { get; init; }
    /// <summary>IOTLB invalidation for IOMMU ops.</summary>
    public InvalidationMode Invalidation { get; init; } = InvalidationMode.Strict;
    /// <summary>Fixed GPA→bus offset for direct ops.</summary>
    public ulong DmaOffset { get; init; }
    /// <summary>Queue size.</summary>
    public ushort QueueSize { get; init; } = 64;
    /// <summary>Chains to send through the queue.</summary>
    public int Chains { get; init; } = 256;
    /// <summary>Largest payload of a chain, in bytes (sizes are drawn from <see cref="Seed"/>).</summary>
    public int MaxPayload { get; init; } = 4096;
    /// <summary>Seed for payload sizes and contents, so runs are deterministic.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Split each request into this many readable segments (exercises indirect tables).</summary>
    public int SegmentsPerRequest { get; init; } = 1;
}
