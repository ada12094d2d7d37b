using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices;

/// <summary>
/// The chains <see cref="QueueService{TMem}"/> holds under <see cref="CompletionDelayInjection"/>: a FIFO in pop order
/// with each chain's due time (Stopwatch ticks), preallocated for a full queue. Owner thread only.
/// </summary>
internal sealed class HeldChains<TMem> where TMem : struct, IDeviceMemory
{
    private readonly DescriptorChain[] _chains;
    private readonly long[] _due;
    private int _head, _count;

    public HeldChains(int capacity, CompletionDelayInjection injection)
    {
        _chains = new DescriptorChain[capacity];
        _due = new long[capacity];
        Injection = injection;
        DelayTicks = (long)(injection.Delay.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
    }

    public CompletionDelayInjection Injection { get; }
    public long DelayTicks { get; }
    /// <summary>The queue the held chains came from: chains of a queue that was replaced are not ours to use.</summary>
    public DeviceQueue<TMem>? Queue { get; private set; }
    /// <summary>Whether <see cref="CompletionDelayInjection.Held"/> was called since the count last fell below ReportAt.</summary>
    public bool Reported { get; set; }
    public int Count => _count;
    public bool IsFull => _count == _chains.Length;
    public long NextDue => _due[_head];

    /// <summary>Holds <paramref name="chain"/>; its due time is set by <see cref="SetDue"/> once the drain is over.</summary>
    public void Add(DescriptorChain chain)
    {
        int i = (_head + _count) % _chains.Length;
        _chains[i] = chain;
        _due[i] = long.MaxValue;
        _count++;
    }

    /// <summary>Sets the due time of the chains held from position <paramref name="from"/> (oldest = 0) on.</summary>
    public void SetDue(int from, long due)
    {
        for (int k = from; k < _count; k++) _due[(_head + k) % _chains.Length] = due;
    }

    public DescriptorChain Take()
    {
        var c = _chains[_head];
        _chains[_head] = null!;
        _head = (_head + 1) % _chains.Length;
        _count--;
        return c;
    }

    /// <summary>
    /// Drops everything held and follows <paramref name="queue"/>. The dropped chains belonged to a queue that was
    /// stopped or reset; with an inflight region the restarted ring resubmits them from it.
    /// </summary>
    public void Forget(DeviceQueue<TMem>? queue)
    {
        Array.Clear(_chains);
        _head = _count = 0;
        Reported = false;
        Queue = queue;
    }
}
