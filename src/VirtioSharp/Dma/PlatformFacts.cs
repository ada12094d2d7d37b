namespace VirtioSharp.Dma;

/// <summary>Facts about the machine and the device's place in it.</summary>
public sealed record PlatformFacts
{
    /// <summary>The device's DMA is translated by an IOMMU.</summary>
    public bool BehindIommu { get; init; }
    /// <summary>The IOMMU passes this device's DMA through untranslated.</summary>
    public bool IommuBypass { get; init; }
    /// <summary>The device snoops CPU caches (as the platform firmware describes it).</summary>
    public bool Coherent { get; init; } = true;
    /// <summary>Protected guest (SEV, TDX, POWER secure VM): the host may only read pages the guest shared.</summary>
    public bool RestrictedMemory { get; init; }
    /// <summary>Quirk: this legacy device is known to sit behind an IOMMU, so give it IOMMU ops anyway.</summary>
    public bool LegacyIommuQuirk { get; init; }
    /// <summary>Fixed GPA→bus offset for direct ops (device-tree dma-ranges).</summary>
    public ulong DmaOffset { get; init; }
    /// <summary>IOTLB invalidation for IOMMU ops (the kernel's iommu.strict setting).</summary>
    public InvalidationMode Invalidation { get; init; } = InvalidationMode.Strict;

    /// <summary>The facts in a few words, for logs and tables; "plain" if none apply.</summary>
    public string Describe()
    {
        var parts = new List<string>();
        if (BehindIommu) parts.Add(IommuBypass ? "IOMMU (bypass)" : "IOMMU");
        if (RestrictedMemory) parts.Add("restricted memory");
        if (!Coherent) parts.Add("non-coherent");
        if (LegacyIommuQuirk) parts.Add("legacy-IOMMU quirk");
        if (DmaOffset != 0) parts.Add($"dma-offset 0x{DmaOffset:x}");
        return parts.Count == 0 ? "plain" : string.Join(", ", parts);
    }
}
