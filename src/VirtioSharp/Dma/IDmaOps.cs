namespace VirtioSharp.Dma;

/// <summary>
/// Per-device DMA operations: how the driver turns its guest-physical buffers into addresses the device may use.
/// Every buffer a virtqueue hands to a device goes through one of these.
/// </summary>
public interface IDmaOps
{
    /// <summary>Which family these ops belong to (the policy's choice).</summary>
    DmaOpsKind Kind { get; }
    /// <summary>Short description for logs and tables, e.g. "iommu(strict)+noncoherent".</summary>
    string Name { get; }
    /// <summary>Largest single mapping; drivers split requests above this (bounce pools are small).</summary>
    ulong MaxMappingSize { get; }
    /// <summary>True if sync calls do real work (bounce copies or cache maintenance).</summary>
    bool NeedsSync { get; }
    /// <summary>Counters of the ops' work, for tests, tables and logs.</summary>
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
    /// <summary>Frees a buffer from <see cref="AllocCoherent"/>.</summary>
    void FreeCoherent(in CoherentBuffer buffer);
}
