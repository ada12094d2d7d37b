namespace VirtioSharp.Memory;

/// <summary>
/// Maps device (bus) addresses to guest-physical addresses: an IOMMU domain's IOTLB, a vhost-user IOTLB, or identity.
/// </summary>
public interface IAddressTranslator
{
    /// <summary>
    /// Translates <paramref name="addr"/> for <paramref name="access"/>; <paramref name="contiguous"/> is how many bytes
    /// from <paramref name="addr"/> map linearly to <paramref name="gpa"/> (at least 1 on success).
    /// </summary>
    MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous);
}
