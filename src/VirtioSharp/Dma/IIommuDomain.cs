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
    /// <summary>Bytes of IOVA space from <see cref="ApertureBase"/>.</summary>
    ulong ApertureSize { get; }
    /// <summary>Points page <paramref name="iova"/> at guest page <paramref name="gpa"/> with <paramref name="permissions"/>; not visible until invalidated.</summary>
    void MapPage(ulong iova, ulong gpa, Access permissions);
    /// <summary>Clears the entry for page <paramref name="iova"/>; the IOTLB may still hold it until invalidated.</summary>
    void UnmapPage(ulong iova);
    /// <summary>Drops IOTLB entries covering [<paramref name="iova"/>, +<paramref name="length"/>).</summary>
    void InvalidateRange(ulong iova, ulong length);
    /// <summary>Drops every IOTLB entry of the domain.</summary>
    void InvalidateAll();
}
