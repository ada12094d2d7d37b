using System.Numerics;

namespace VirtioSharp.BlkLoad;

/// <summary>
/// Log-linear latency histogram in Stopwatch ticks: 32 buckets per power of two (about 3 % resolution), fixed size, so
/// recording is an index computation and an increment, never an allocation.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBits = 5, Sub = 1 << SubBits;
    private readonly long[] _counts = new long[64 * Sub];

    public long Count { get; private set; }

    public void Record(long ticks)
    {
        ulong v = (ulong)Math.Max(0, ticks);
        int index;
        if (v < Sub) index = (int)v;
        else
        {
            int shift = 63 - BitOperations.LeadingZeroCount(v) - SubBits;
            index = (shift + 1) * Sub + (int)((v >> shift) - Sub);
        }
        _counts[index]++;
        Count++;
    }

    public void Add(LatencyHistogram other)
    {
        for (int i = 0; i < _counts.Length; i++) _counts[i] += other._counts[i];
        Count += other.Count;
    }

    /// <summary>The value (ticks, bucket middle) below which a fraction <paramref name="q"/> of the samples fall.</summary>
    public double Quantile(double q)
    {
        if (Count == 0) return double.NaN;
        long rank = Math.Max(1, (long)Math.Ceiling(q * Count)), seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank) return Middle(i);
        }
        return Middle(_counts.Length - 1);
    }

    private static double Middle(int index)
    {
        if (index < Sub) return index;
        int shift = index / Sub - 1;
        return (Sub + index % Sub + 0.5) * Math.Pow(2, shift);
    }
}
