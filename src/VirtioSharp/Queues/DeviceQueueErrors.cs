using System.Runtime.CompilerServices;

namespace VirtioSharp.Queues;

/// <summary>Caller-misuse exceptions shared by both layouts.</summary>
internal static class DeviceQueueErrors
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowOutOfOrder(DescriptorChain chain) =>
        throw new VirtqueueException($"IN_ORDER: {chain} is not the oldest chain in flight (§2.7.9, §2.8.20)");
}
