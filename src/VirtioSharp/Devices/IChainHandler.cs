using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices;

/// <summary>
/// A device's per-chain work for <see cref="QueueService{TMem}"/>: a struct, so the loop calls it without virtual
/// dispatch. It runs on the queue's owner thread.
/// </summary>
public interface IChainHandler<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>Whether to take another chain now; false leaves the rest available (e.g. no input to deliver yet).</summary>
    bool Ready { get; }
    /// <summary>
    /// Processes one validated chain; returns the used length (bytes written to its device-writable part), or
    /// <see cref="ChainHandling.Pending"/> to keep it and complete it later.
    /// </summary>
    uint Handle(DeviceQueue<TMem> queue, DescriptorChain chain);
}
