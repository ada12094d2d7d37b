namespace VirtioSharp.Dma;

/// <summary>Counters for one DMA ops instance. Best-effort under concurrency.</summary>
public sealed class DmaStats
{
    // Plain fields so hot paths can ++ them; each counts the calls (or bytes, or IOTLB invalidations) its name says.
#pragma warning disable CS1591
    public long Maps;
    public long Unmaps;
    public long MapErrors;
    public long SyncsForDevice;
    public long SyncsForCpu;
    public long BounceBytesIn;
    public long BounceBytesOut;
    public long Invalidations;
    public long CacheCleans;
    public long CacheInvalidates;
    public long CoherentAllocs;
    public long CoherentFrees;
#pragma warning restore CS1591
    /// <summary>Mappings made and not yet unmapped.</summary>
    public long Outstanding => Maps - Unmaps;

    /// <inheritdoc/>
    public override string ToString() =>
        $"maps={Maps} unmaps={Unmaps} errors={MapErrors} bounce-in={BounceBytesIn} bounce-out={BounceBytesOut} invalidations={Invalidations} cleans={CacheCleans} invalidates={CacheInvalidates}";
}
