namespace VirtioSharp.BlkLoad;

/// <summary>The phase every driver thread reads once per completion batch: warm-up, measured, stopping.</summary>
internal sealed class RunControl
{
    public const int Warmup = 0, Measure = 1, Stop = 2;
    private volatile int _phase;

    public int Phase => _phase;

    public void Set(int phase) => _phase = phase;
}
