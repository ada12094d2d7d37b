namespace VirtioSharp.Memory;

/// <summary>Outcome of one memory access. Hot paths return this instead of throwing.</summary>
public enum MemStatus : byte
{
    /// <summary>The access succeeded.</summary>
    Ok = 0,
    /// <summary>No guest memory region holds the address (or the range runs past one with no neighbour).</summary>
    Unmapped,
    /// <summary>The translation (IOMMU page table / IOTLB) has no entry for the address.</summary>
    TranslationFault,
    /// <summary>A translation exists but does not grant this access.</summary>
    PermissionFault,
    /// <summary>The page is private to a protected guest and the device may not touch it.</summary>
    ProtectedPage,
    /// <summary>An index or flag field was not naturally aligned, so it cannot be accessed atomically.</summary>
    Misaligned,
    /// <summary>The address range wraps around the 64-bit address space.</summary>
    Overflow,
    /// <summary>
    /// The memory is reachable only through this address space's Read/Write (a simulated bus that enforces private
    /// pages or snoops a cache), not as host memory: copy instead of handing it to an I/O.
    /// </summary>
    NoDirectAccess,
    /// <summary>
    /// The translation is being fetched (a vhost-user IOTLB miss) but the ring is being stopped or paused meanwhile: not
    /// the driver's fault. A queue leaves a chain it was reading available, so whoever runs the ring next takes it
    /// again; a used entry it was writing waits for the next run (<see cref="Queues.DeviceQueue{TMem}.UnpublishedUsed"/>).
    /// </summary>
    Interrupted,
}
