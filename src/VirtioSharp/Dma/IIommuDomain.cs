using VirtioSharp.Memory;

namespace VirtioSharp.Dma;

/// <summary>
/// The driver's handle on an IOMMU translation domain: program 4 KiB page-table entries and invalidate the IOTLB.
/// Page-table changes do not reach the IOTLB until invalidated, as on real hardware.
/// </summary>
public interface IIommuDomain
{
    /// <summary>First IOVA the domain can map and its size (the aperture).</summary>
    ulong ApertureBase { get; }
    ulong ApertureSize { get; }
    void MapPage(ulong iova, ulong gpa, Access permissions);
    void UnmapPage(ulong iova);
    void InvalidateRange(ulong iova, ulong length);
    void InvalidateAll();
}
