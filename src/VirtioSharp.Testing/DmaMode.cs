namespace VirtioSharp.Testing;

/// <summary>The DMA setups a simulated device can be tested in.</summary>
public enum DmaMode
{
    /// <summary>No IOMMU, no protection: the device uses guest-physical addresses.</summary>
    Direct,
    /// <summary>Behind an IOMMU that invalidates on every unmap.</summary>
    IommuStrict,
    /// <summary>Behind an IOMMU with lazy (batched) invalidation.</summary>
    IommuLazy,
    /// <summary>Protected guest memory: data goes through a shared bounce pool.</summary>
    Bounce,
    /// <summary>A device that does not snoop the CPU cache: the driver flushes and invalidates.</summary>
    NonCoherent,
    /// <summary>A coherent device on a platform with a CPU cache: coherent direct ops, the device snoops.</summary>
    CoherentCached,
}
