using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices;

/// <summary>
/// The pop → process → add-used → interrupt loop, written once for every device: notifications stay off while the
/// queue is drained and are re-enabled with a re-check (the lost-wakeup race, §2.7.10), IN_ORDER drains are returned
/// as one used batch (§2.7.9, §2.8.20), and the driver is interrupted once at the end if it wants to be. One instance
/// per queue, used only on that queue's owner thread; it allocates nothing per chain.
/// </summary>
public sealed class QueueService<TMem> where TMem : struct, IDeviceMemory
{
    private readonly DescriptorChain[] _batch;   // IN_ORDER: chains processed but not yet used
    private long _chains, _usedElements;

    /// <summary>A loop for a queue of at most <paramref name="maxQueueSize"/> entries.</summary>
    public QueueService(ushort maxQueueSize) => _batch = new DescriptorChain[Math.Max((int)maxQueueSize, 1)];

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
        bool inOrder = q.Options.InOrder;
        var batch = _batch;
        // A driver that keeps the ring full must not keep the owner thread in here for ever (it would never see a
        // stop): after two rings' worth of chains the round ends and the queue wakes itself for the next one.
        int budget = 2 * Math.Max((int)q.Size, 1);
        while (true)
        {
            q.DisableNotifications();
            int n = 0;
            while (budget > 0 && handler.Ready && q.Pop(out var chain) == QueueStatus.Ok)
            {
                budget--;
                uint written = handler.Handle(q, chain!);
                Volatile.Write(ref _chains, _chains + 1);
                if (!inOrder)
                {
                    if (q.AddUsed(chain!, written) != QueueStatus.Ok) break;
                    Volatile.Write(ref _usedElements, _usedElements + 1);
                    continue;
                }
                batch[n++] = chain!;
                // A batch's earlier buffers count as written in full, so a short one closes it.
                if ((written != chain!.WritableBytes || n == batch.Length) && UseBatch(q, ref n, written) != QueueStatus.Ok) break;
            }
            // The batch is used before notifications are re-enabled: nothing is left pending while the device sleeps.
            if (n > 0) UseBatch(q, ref n, (uint)batch[n - 1].WritableBytes);
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
        }
        context.InterruptIfNeeded(queue);
    }

    private QueueStatus UseBatch(DeviceQueue<TMem> q, ref int n, uint lastWritten)
    {
        var st = q.AddUsedBatch(_batch.AsSpan(0, n), lastWritten);
        n = 0;
        if (st == QueueStatus.Ok) Volatile.Write(ref _usedElements, _usedElements + 1);
        return st;
    }
}
