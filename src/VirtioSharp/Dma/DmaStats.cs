namespace VirtioSharp.Dma;

/// <summary>Counters for one DMA ops instance. Best-effort under concurrency.</summary>
public sealed class DmaStats
{
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
    public long Outstanding => Maps - Unmaps;

    public override string ToString() =>
        $"maps={Maps} unmaps={Unmaps} errors={MapErrors} bounce-in={BounceBytesIn} bounce-out={BounceBytesOut} invalidations={Invalidations} cleans={CacheCleans} invalidates={CacheInvalidates}";
}
