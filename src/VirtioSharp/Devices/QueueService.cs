using System.Diagnostics;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices;

/// <summary>
/// The pop → process → add-used → interrupt loop, written once for every device: notifications stay off while the
/// queue is drained and are re-enabled with a re-check (the lost-wakeup race, §2.7.10), IN_ORDER drains are returned
/// as one used batch (§2.7.9, §2.8.20), and the driver is interrupted once at the end if it wants to be. One instance
/// per queue, used only on that queue's owner thread; it allocates nothing per chain. A handler may keep a chain for
/// asynchronous I/O (<see cref="ChainHandling.Pending"/>) and finish it later with <see cref="Complete"/>; under IN_ORDER
/// the loop still uses chains in pop order, holding back ones that finished early. With a
/// <see cref="CompletionDelayInjection"/> (crash tests only) it holds each chain for a while before processing it.
/// </summary>
public sealed class QueueService<TMem> where TMem : struct, IDeviceMemory
{
    private readonly DescriptorChain[] _batch;   // IN_ORDER: chains released as one used batch
    // IN_ORDER: every chain handled and not yet used, in pop order, with its used length once it has one.
    private readonly DescriptorChain?[] _order;
    private readonly uint[] _written;
    private readonly bool[] _done;
    private int _orderHead, _orderCount, _pending;
    private readonly HeldChains<TMem>? _held;    // fault injection only; null in service
    private long _chains, _usedElements;

    /// <summary>
    /// A loop for a queue of at most <paramref name="maxQueueSize"/> entries; <paramref name="injection"/> (crash tests
    /// only) delays every chain's processing and completion.
    /// </summary>
    public QueueService(ushort maxQueueSize, CompletionDelayInjection? injection = null)
    {
        int cap = Math.Max((int)maxQueueSize, 1);
        _batch = new DescriptorChain[cap];
        _order = new DescriptorChain?[cap];
        _written = new uint[cap];
        _done = new bool[cap];
        if (injection is null) return;
        if (injection.Delay <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(injection), "the injected delay must be more than zero");
        if (injection.ReportAt < 1) throw new ArgumentOutOfRangeException(nameof(injection), "ReportAt must be at least 1");
        _held = new HeldChains<TMem>(cap, injection);
    }

    /// <summary>Chains held by the fault injection right now (0 without it); owner thread only.</summary>
    public int HeldCount => _held?.Count ?? 0;
    /// <summary>Chains a handler kept (<see cref="ChainHandling.Pending"/>) and has not completed; owner thread only.</summary>
    public int Pending => _pending;

    /// <summary>
    /// Device reset (every owner thread stopped): forget held and pending chains; their queue is gone. A device with
    /// asynchronous I/O must have waited for it first: nothing may still write into those chains' buffers.
    /// </summary>
    public void Reset()
    {
        _held?.Forget(null);
        Array.Clear(_order);
        _orderHead = _orderCount = _pending = 0;
    }

    /// <summary>Chains processed so far (readable from any thread).</summary>
    public long Chains => Volatile.Read(ref _chains);
    /// <summary>Used elements written: one per chain, or one per batch with IN_ORDER.</summary>
    public long UsedElements => Volatile.Read(ref _usedElements);

    /// <summary>
    /// Serves <paramref name="queue"/> of <paramref name="context"/> with <paramref name="handler"/> until it is empty
    /// or the handler is not ready. A broken queue ends the loop; the host then sets DEVICE_NEEDS_RESET.
    /// </summary>
    public void Run<THandler>(DeviceContext<TMem> context, int queue, ref THandler handler)
        where THandler : struct, IChainHandler<TMem>
    {
        var q = context.Queues[queue];
        if (q is null) return;
        if (_held is { } held) { RunHeld(context, queue, q, ref handler, held); return; }
        bool inOrder = q.Options.InOrder;
        // A driver that keeps the ring full must not keep the owner thread in here for ever (it would never see a
        // stop): after two rings' worth of chains the round ends and the queue wakes itself for the next one. A re-check
        // that finds more spends budget too: a ring whose used flags lie on its own avail idx (fuzz finding F3) reads
        // empty with notifications off and non-empty with them on, for ever, without a single pop.
        int budget = 2 * Math.Max((int)q.Size, 1);
        while (true)
        {
            q.DisableNotifications();
            while (budget > 0 && handler.Ready && q.Pop(out var chain) == QueueStatus.Ok)
            {
                budget--;
                uint written = handler.Handle(q, chain!);
                Volatile.Write(ref _chains, _chains + 1);
                if (Handled(q, chain!, written, inOrder) != QueueStatus.Ok) break;
            }
            // What finished is used before notifications are re-enabled: nothing is left pending while the device sleeps.
            if (inOrder) ReleaseInOrder(q);
            if (q.IsBroken) return;
            if (budget == 0)
            {
                context.InterruptIfNeeded(queue);
                context.Wake(queue);
                return;
            }
            if (!handler.Ready)
            {
                // Nothing to give now: the device wakes this queue itself when it has (DeviceContext.Wake).
                q.EnableNotifications();
                break;
            }
            if (!q.EnableNotifications()) break;
            budget--;
        }
        context.InterruptIfNeeded(queue);
    }

    /// <summary>
    /// On the owner thread: a chain the handler kept (<see cref="ChainHandling.Pending"/>) is done, having written
    /// <paramref name="written"/> bytes. It is used at once; under IN_ORDER it waits for <see cref="Commit"/>, which uses
    /// every finished chain whose older ones are finished too, as few used elements as possible. Interrupting is the
    /// caller's (once per batch of completions: <see cref="DeviceContext{TMem}.InterruptIfNeeded"/>).
    /// </summary>
    public QueueStatus Complete(DeviceQueue<TMem> q, DescriptorChain chain, uint written)
    {
        if (_pending == 0) throw new InvalidOperationException($"{chain} completed, but no chain is pending");
        _pending--;
        if (!q.Options.InOrder)
        {
            var st = q.AddUsed(chain, written);
            if (st == QueueStatus.Ok) Volatile.Write(ref _usedElements, _usedElements + 1);
            return st;
        }
        int i = chain.ServiceIndex;
        if ((uint)i >= (uint)_order.Length || !ReferenceEquals(_order[i], chain) || _done[i])
            throw new InvalidOperationException($"{chain} completed, but it is not pending here");
        _written[i] = written;
        _done[i] = true;
        return QueueStatus.Ok;
    }

    /// <summary>After a batch of <see cref="Complete"/> calls: IN_ORDER uses what can be used now (a no-op otherwise).</summary>
    public QueueStatus Commit(DeviceQueue<TMem> q) => q.Options.InOrder ? ReleaseInOrder(q) : QueueStatus.Ok;

    private QueueStatus Handled(DeviceQueue<TMem> q, DescriptorChain chain, uint written, bool inOrder)
    {
        bool pending = written == ChainHandling.Pending;
        if (pending) _pending++;
        if (!inOrder)
        {
            if (pending) return QueueStatus.Ok;
            var st = q.AddUsed(chain, written);
            if (st == QueueStatus.Ok) Volatile.Write(ref _usedElements, _usedElements + 1);
            return st;
        }
        int i = (_orderHead + _orderCount) % _order.Length;
        _order[i] = chain;
        _written[i] = pending ? 0 : written;
        _done[i] = !pending;
        chain.ServiceIndex = i;
        _orderCount++;
        // A full window (a queue's worth handled, none used) must be released before the next pop.
        return _orderCount == _order.Length ? ReleaseInOrder(q) : QueueStatus.Ok;
    }

    /// <summary>IN_ORDER: uses the finished chains at the front of the pop order, as few used elements as possible.</summary>
    private QueueStatus ReleaseInOrder(DeviceQueue<TMem> q)
    {
        int n = 0;
        var st = QueueStatus.Ok;
        uint last = 0;
        while (_orderCount > 0 && _done[_orderHead])
        {
            var c = _order[_orderHead]!;
            last = _written[_orderHead];
            _order[_orderHead] = null;
            _orderHead = (_orderHead + 1) % _order.Length;
            _orderCount--;
            _batch[n++] = c;
            // A batch's earlier buffers count as written in full, so a short one closes it.
            if (last != c.WritableBytes || n == _batch.Length)
            {
                var one = UseBatch(q, ref n, last);
                if (st == QueueStatus.Ok) st = one;
            }
        }
        if (n > 0)
        {
            var one = UseBatch(q, ref n, last);
            if (st == QueueStatus.Ok) st = one;
        }
        return st;
    }

    /// <summary>
    /// The fault-injection loop: takes every available chain without touching it (it stays in flight, and in a
    /// vhost-user inflight region), then processes and uses the ones whose delay has passed, oldest first (so IN_ORDER
    /// still holds), and sets a timer for the next.
    /// </summary>
    private void RunHeld<THandler>(DeviceContext<TMem> context, int queue, DeviceQueue<TMem> q, ref THandler handler, HeldChains<TMem> held)
        where THandler : struct, IChainHandler<TMem>
    {
        // A ring that restarted (or a device reset) has a new queue; the old one's chains must not be used on it.
        if (!ReferenceEquals(held.Queue, q)) held.Forget(q);
        var injection = held.Injection;
        int before = held.Count;
        // Bounded as in Run: a ring that looks non-empty only with notifications on must not keep the thread here.
        for (int rechecks = 2 * Math.Max((int)q.Size, 1); ; rechecks--)
        {
            q.DisableNotifications();
            while (!held.IsFull && q.Pop(out var chain) == QueueStatus.Ok) held.Add(chain!);
            if (q.IsBroken) return;
            // A full hold leaves notifications off: the timer comes back for the rest.
            if (held.IsFull || !q.EnableNotifications()) break;
            if (rechecks == 0) { context.Wake(queue); break; }
        }
        // The delay runs from the end of the drain, not from each pop: popping can take long (under a vIOMMU every
        // IOTLB miss is a round trip to the front-end), and no chain may come due before the report below says it is
        // held, or a test that kills on the report finds it already completed.
        held.SetDue(before, Stopwatch.GetTimestamp() + held.DelayTicks);
        bool inOrder = q.Options.InOrder;
        long t = Stopwatch.GetTimestamp();
        while (held.Count > 0 && held.NextDue <= t && handler.Ready)
        {
            var chain = held.Take();
            uint written = handler.Handle(q, chain);
            Volatile.Write(ref _chains, _chains + 1);
            if (Handled(q, chain, written, inOrder) != QueueStatus.Ok) break;
        }
        if (inOrder) ReleaseInOrder(q);
        if (q.IsBroken) return;
        // Reported after the release, so the count is what stays in flight (the chains of this drain for a full delay).
        if (held.Count < injection.ReportAt) held.Reported = false;
        else if (!held.Reported)
        {
            held.Reported = true;
            injection.Held?.Invoke(queue, held.Count);
        }
        // A handler that is not ready wakes the queue itself when it is (DeviceContext.Wake).
        if (held.Count > 0 && handler.Ready)
            context.WakeAfter(queue, TimeSpan.FromSeconds(Math.Max(0, held.NextDue - t) / (double)Stopwatch.Frequency));
        context.InterruptIfNeeded(queue);
    }

    private QueueStatus UseBatch(DeviceQueue<TMem> q, ref int n, uint lastWritten)
    {
        var st = q.AddUsedBatch(_batch.AsSpan(0, n), lastWritten);
        Array.Clear(_batch, 0, n);
        n = 0;
        if (st == QueueStatus.Ok) Volatile.Write(ref _usedElements, _usedElements + 1);
        return st;
    }
}
