namespace VirtioSharp.Platform;

/// <summary>
/// A simulated IOMMU: per-device domains with 4 KiB page tables, an IOTLB per domain that is only updated by explicit
/// invalidation, bypass mode, and a fault log. A faulting access never touches memory. Not thread-safe: the simulated
/// platform runs driver and device on one thread so every run is deterministic.
/// </summary>
public sealed class Iommu
{
    internal const int MaxLoggedFaults = 4096;
    private readonly List<IommuFault> _faults = new();
    private readonly List<IommuDomain> _domains = new();

    /// <summary>IOVA aperture of every domain. Starts at 4 GiB so an IOVA is never mistaken for a small GPA.</summary>
    public ulong ApertureBase { get; init; } = 1UL << 32;
    /// <summary>IOVA aperture size of every domain.</summary>
    public ulong ApertureSize { get; init; } = 1UL << 30;
    /// <summary>IOTLB entries per domain (a power of two).</summary>
    public int IotlbEntries { get; init; } = 256;

    internal IReadOnlyList<IommuFault> Faults => _faults;
    internal long FaultCount { get; private set; }
    internal IReadOnlyList<IommuDomain> Domains => _domains;

    internal IommuDomain CreateDomain(string device, bool bypass = false)
    {
        var d = new IommuDomain(this, device, ApertureBase, ApertureSize, IotlbEntries) { Bypass = bypass };
        _domains.Add(d);
        return d;
    }

    internal void RecordFault(in IommuFault fault)
    {
        FaultCount++;
        if (_faults.Count < MaxLoggedFaults) _faults.Add(fault);
    }

    internal void ClearFaults()
    {
        _faults.Clear();
        FaultCount = 0;
    }
}
