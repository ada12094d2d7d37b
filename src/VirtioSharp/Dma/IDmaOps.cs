namespace VirtioSharp.Dma;

/// <summary>
/// Per-device DMA operations: how the driver turns its guest-physical buffers into addresses the device may use.
/// Every buffer a virtqueue hands to a device goes through one of these.
/// </summary>
public interface IDmaOps
{
    DmaOpsKind Kind { get; }
    /// <summary>Short description for logs and tables, e.g. "iommu(strict)+noncoherent".</summary>
    string Name { get; }
    /// <summary>Largest single mapping; drivers split requests above this (bounce pools are small).</summary>
    ulong MaxMappingSize { get; }
    /// <summary>True if sync calls do real work (bounce copies or cache maintenance).</summary>
    bool NeedsSync { get; }
    DmaStats Stats { get; }

    /// <summary>Maps [gpa, gpa+length) for the device; on failure nothing stays mapped.</summary>
    DmaStatus Map(ulong gpa, uint length, DmaDirection direction, out DmaMapping mapping);
    /// <summary>Ends a mapping; for device-writable buffers the data is visible to the CPU afterwards.</summary>
    void Unmap(in DmaMapping mapping);
    /// <summary>Hands a mapped buffer (back) to the device after the CPU touched it.</summary>
    void SyncForDevice(in DmaMapping mapping);
    /// <summary>Makes what the device wrote visible to the CPU without ending the mapping.</summary>
    void SyncForCpu(in DmaMapping mapping);
    /// <summary>Memory both sides may use at any time without syncs (rings).</summary>
    DmaStatus AllocCoherent(ulong size, out CoherentBuffer buffer);
    void FreeCoherent(in CoherentBuffer buffer);
}
