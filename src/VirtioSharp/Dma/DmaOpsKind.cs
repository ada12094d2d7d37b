namespace VirtioSharp.Dma;

/// <summary>Which family of DMA ops a device was given.</summary>
public enum DmaOpsKind : byte
{
    /// <summary>Bus address = GPA (plus a fixed offset): <see cref="DirectDmaOps"/>.</summary>
    Direct,
    /// <summary>Each mapping gets IOVA pages in the device's IOMMU domain: <see cref="IommuDmaOps"/>.</summary>
    Iommu,
    /// <summary>Buffers are copied through a shared pool: <see cref="BounceDmaOps"/>.</summary>
    Bounce,
}
