namespace VirtioSharp.Dma;

/// <summary>Which family of DMA ops a device was given.</summary>
public enum DmaOpsKind : byte
{
    Direct,
    Iommu,
    Bounce,
}
