using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>One recorded IOMMU fault: which device, which address, what it tried, why it failed.</summary>
public readonly record struct IommuFault(string Device, ulong Iova, Access Access, MemStatus Reason)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Device}: {Access} at IOVA 0x{Iova:x}: {Reason.Describe()}";
}
