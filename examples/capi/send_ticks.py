# examples/capi/send_ticks.py: after `python setup.py build_ext --inplace` here; receive_ticks.py reads them
import cywhip
import producer

with cywhip.Sender("capi-ticks", message_length=16, max_queued_messages=4096) as tx:
    print("sent", producer.produce(tx, 1_000_000))          # one capi.send() per tick, without the GIL
